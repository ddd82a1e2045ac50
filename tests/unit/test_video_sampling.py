"""swift_ext.video against qwen-vl-utils 0.0.14 itself: frame counts, clip windows, frame indices and the
per-frame size fetch_video picks, over thousands of random videos and settings (the module globals set
as ms-swift's `patch_qwen_vl_utils` sets them)."""
import math
from contextlib import contextmanager
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swift_ext.geometry import VideoError, VideoGeometry
from swift_ext.video import (
    VideoSettings,
    frame_indices,
    frame_range,
    predict_image_list_geometry,
    predict_video_geometry,
    sample_count,
    settings_of_module,
    video_settings,
)

torch = pytest.importorskip('torch')
vp = pytest.importorskip('qwen_vl_utils.vision_process')

COMMON_FPS = [24000 / 1001, 30000 / 1001, 24.0, 25.0, 30.0, 50.0, 60.0, 29.970000000000002, 1.0, 0.5]
fps_values = st.one_of(st.sampled_from(COMMON_FPS), st.floats(0.2, 240.0))
video_settings_st = st.builds(
    VideoSettings, patch_size=st.sampled_from([14, 16]), fps=st.one_of(st.just(2.0), st.floats(0.1, 8.0)),
    fps_min_frames=st.integers(1, 16), fps_max_frames=st.integers(2, 1000),
    video_min_token_num=st.integers(1, 256), video_max_token_num=st.integers(1, 2048),
    model_seq_len=st.one_of(st.just(128000), st.integers(1000, 200000)))


@contextmanager
def patched(s: VideoSettings):
    """qwen-vl-utils' globals as ms-swift's patch leaves them for settings ``s``."""
    with mock.patch.multiple(vp, FPS=s.fps, FPS_MIN_FRAMES=s.fps_min_frames, FPS_MAX_FRAMES=s.fps_max_frames,
                             VIDEO_MIN_TOKEN_NUM=s.video_min_token_num, VIDEO_MAX_TOKEN_NUM=s.video_max_token_num,
                             MODEL_SEQ_LEN=s.model_seq_len, FRAME_FACTOR=s.frame_factor):
        yield


def _row(draw, duration):
    row = {}
    choice = draw(st.sampled_from(['none', 'fps', 'nframes', 'limits']))
    if choice == 'fps':
        row['fps'] = draw(st.floats(0.05, 12.0))
    elif choice == 'nframes':
        row['nframes'] = draw(st.integers(0, 900))
    elif choice == 'limits':
        row['min_frames'] = draw(st.integers(1, 64))
        row['max_frames'] = draw(st.integers(1, 800))
    return row


@st.composite
def videos(draw):
    fps = draw(fps_values)
    total = draw(st.integers(1, 20000))
    s = draw(video_settings_st)
    duration = total / fps
    row = _row(draw, duration)
    if draw(st.booleans()):
        row['video_start'] = draw(st.one_of(st.none(), st.floats(-2.0, duration + 2.0)))
        row['video_end'] = draw(st.one_of(st.none(), st.floats(-2.0, duration + 2.0)))
    return total, fps, s, row


def _theirs_count(row, total, fps, s):
    with patched(s):
        try:
            start, end, clip = vp.calculate_video_frame_range(row, total, fps)
            return (start, end, clip), vp.smart_nframes(row, total_frames=clip, video_fps=fps)
        except (ValueError, AssertionError) as exc:
            return 'error', type(exc).__name__


def _ours_count(row, total, fps, s):
    try:
        start, end, clip = frame_range(total_frames=total, video_fps=fps, video_start=row.get('video_start'),
                                       video_end=row.get('video_end'))
        return (start, end, clip), sample_count(clip_frames=clip, video_fps=fps, settings=s, row=row)
    except VideoError:
        return 'error', None


@settings(max_examples=4000, deadline=None)
@given(videos())
def test_frame_range_and_count_parity(video):
    # calculate_video_frame_range + smart_nframes, as the decord / torchcodec readers chain them.
    total, fps, s, row = video
    theirs, ours = _theirs_count(row, total, fps, s), _ours_count(row, total, fps, s)
    if theirs[0] == 'error':
        assert ours[0] == 'error', (theirs, ours)
    else:
        assert ours == theirs


@settings(max_examples=3000, deadline=None)
@given(start=st.integers(0, 200000), length=st.integers(1, 60000), count=st.integers(2, 2000))
def test_frame_indices_equal_torch_linspace(start, length, count):
    # torch.linspace(start, end, n).round().long() in float32, as the readers call it.
    end = start + length
    expected = torch.linspace(start, end, count).round().long().tolist()
    assert list(frame_indices(start_frame=start, end_frame=end, count=count)) == expected


@pytest.mark.parametrize('start,end,count', [(0, 12683, 768), (0, 15531, 768), (0, 9, 3), (3, 4, 2), (0, 1, 2),
                                             (17, 17 + 2 ** 16, 999)])
def test_frame_indices_known_fma_cases(start, end, count):
    # Cases where rounding each float32 step separately (no fused multiply-add) gives another frame.
    assert list(frame_indices(start_frame=start, end_frame=end, count=count)) == \
        torch.linspace(start, end, count).round().long().tolist()


class _Stop(Exception):
    pass


def _fetch_video_size(row, *, nframes, width, height, s):
    """The (width, height) fetch_video's own code picks for frames of width x height, nframes of them.

    The reader hands fetch_video a zero-stride tensor of the video's shape; the real smart_resize
    runs, and the call stops there (before any pixel is resized).
    """
    seen = {}
    real = vp.smart_resize

    def spy(*args, **kwargs):
        seen['hw'] = real(*args, **kwargs)
        raise _Stop

    def reader(ele):
        return torch.zeros(1, 1, 1, 1, dtype=torch.uint8).expand(nframes, 3, height, width), {}, 2.0

    backend = vp.get_video_reader_backend()
    with patched(s), mock.patch.dict(vp.VIDEO_READER_BACKENDS, {backend: reader}), \
            mock.patch.object(vp, 'smart_resize', spy):
        try:
            vp.fetch_video({'video': 'v.mp4', **row}, image_patch_size=s.patch_size)
        except _Stop:
            h, w = seen['hw']
            return 'error' if h <= 0 or w <= 0 else (w, h)
        except (ValueError, AssertionError):
            return 'error'
    raise AssertionError('fetch_video did not reach smart_resize')


@st.composite
def frames(draw):
    s = draw(video_settings_st)
    width, height = draw(st.integers(1, 8000)), draw(st.integers(1, 8000))
    nframes = draw(st.integers(1, 400)) * 2
    row = {}
    for key, values in (('min_pixels', st.integers(1, 400000)), ('max_pixels', st.integers(1, 2000000)),
                        ('total_pixels', st.integers(1, 50_000_000))):
        if draw(st.integers(0, 3)) == 0:
            row[key] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        row['resized_width'], row['resized_height'] = draw(st.integers(1, 3000)), draw(st.integers(1, 3000))
    return s, width, height, nframes, row


@settings(max_examples=3000, deadline=None)
@given(frames())
def test_frame_size_parity_with_fetch_video(case):
    from swift_ext.video import frame_size
    s, width, height, nframes, row = case
    theirs = _fetch_video_size(row, nframes=nframes, width=width, height=height, s=s)
    try:
        ours = frame_size(width=width, height=height, nframes=nframes, settings=s, row=row)[:2]
    except VideoError:
        ours = 'error'
    assert ours == theirs


@pytest.mark.parametrize('env,patch,expected', [
    ({}, 14, VideoSettings()),
    ({'VIDEO_MAX_PIXELS': '50176'}, 14, VideoSettings(video_max_token_num=64)),  # 50176 // 28**2
    ({'VIDEO_MAX_PIXELS': '50176'}, 16, VideoSettings(patch_size=16, video_max_token_num=49)),  # // 32**2
    ({'VIDEO_MAX_PIXELS': '50176', 'VIDEO_MAX_TOKEN_NUM': '300'}, 14, VideoSettings(video_max_token_num=300)),
    ({'VIDEO_MIN_PIXELS': '1000', 'FPS': '1', 'FPS_MAX_FRAMES': '64', 'MODEL_SEQ_LEN': '2e4'}, 14,
     VideoSettings(video_min_token_num=1, fps=1.0, fps_max_frames=64, model_seq_len=20000)),
    ({'VIDEO_MAX_PIXELS': ''}, 14, VideoSettings()),  # empty is unset for compat_qwen_vl_utils
])
def test_settings_precedence(env, patch, expected):
    assert video_settings(patch_size=patch, env=env) == expected


def test_settings_equal_what_ms_swift_patches():
    # ms-swift's own compat + patch functions on a copy of the module's globals, same environment.
    # compat_qwen_vl_utils writes os.environ: patch.dict puts it back afterwards.
    import os
    import types

    from swift.model.models.qwen import compat_qwen_vl_utils, patch_qwen_vl_utils
    env = {'VIDEO_MAX_PIXELS': '200704', 'VIDEO_MIN_PIXELS': '25088', 'FPS': '1.5', 'FPS_MIN_FRAMES': '6',
           'FPS_MAX_FRAMES': '40'}
    clean = {k: v for k, v in os.environ.items() if k not in ('VIDEO_MAX_TOKEN_NUM', 'VIDEO_MIN_TOKEN_NUM')}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        module = types.SimpleNamespace(**{k: getattr(vp, k) for k in dir(vp) if k.isupper()})
        compat_qwen_vl_utils(image_patch_size=16)
        patch_qwen_vl_utils(module)
    ours = video_settings(patch_size=16, env=env)
    assert settings_of_module(module, patch_size=16) == ours
    assert (ours.video_max_token_num, ours.video_min_token_num, ours.fps, ours.fps_min_frames, ours.fps_max_frames) \
        == (module.VIDEO_MAX_TOKEN_NUM, module.VIDEO_MIN_TOKEN_NUM, module.FPS, module.FPS_MIN_FRAMES,
            module.FPS_MAX_FRAMES) == (196, 24, 1.5, 6, 40)


@pytest.mark.parametrize('env,match', [({'FPS_MAX_FRAMES': '1.5'}, 'FPS_MAX_FRAMES must be an integer'),
                                       ({'FPS': 'two'}, 'FPS must be a number'),
                                       ({'VIDEO_MAX_PIXELS': '1e6'}, 'VIDEO_MAX_PIXELS must be an integer')])
def test_bad_settings_name_the_variable(env, match):
    with pytest.raises(VideoError, match=match):
        video_settings(env=env)


def test_geometry_round_trips_and_maps_boxes():
    geo = predict_video_geometry(width=640, height=360, total_frames=300, video_fps=30.0, version='v3',
                                 row_kwargs={'video_start': 2.0, 'video_end': 8.0})
    assert VideoGeometry.from_dict(geo.to_dict()) == geo
    assert geo.frame_times[0] == 2.0 and geo.frame_times[-1] == 8.0 and geo.video_start == 2.0
    assert geo.sampling_step == pytest.approx(2 / geo.sample_fps)
    box = [64, 36, 320, 180]
    assert geo.from_model_frame(geo.to_model_frame(box, 'norm1000'), 'norm1000') == pytest.approx(box)
    assert geo.to_model_frame(box, 'abs')[2] == pytest.approx(320 * geo.resized_width / 640)


def test_vllm_mode_measures_qwen3_times_from_the_clip():
    # ms-swift 4.6's vLLM mode subtracts the first sampled index; training keeps source times.
    kwargs = dict(width=96, height=72, total_frames=150, video_fps=30.0, version='v3',
                  row_kwargs={'video_start': 1.0, 'video_end': 4.0})
    train, vllm = predict_video_geometry(**kwargs), predict_video_geometry(mode='vllm', **kwargs)
    assert train.timestamps == ('<1.3 seconds>', '<2.5 seconds>', '<3.7 seconds>')
    assert vllm.timestamps == ('<0.3 seconds>', '<1.5 seconds>', '<2.7 seconds>')
    assert vllm.timestamp_origin == 1.0 and train.frame_indices == vllm.frame_indices


def test_clamps_are_named():
    # 10 minutes at the defaults: 768 frames, and MODEL_SEQ_LEN (not the per-frame cap) shrinks them.
    long = predict_video_geometry(width=1920, height=1080, total_frames=30 * 600, video_fps=30.0,
                                  settings=VideoSettings())
    assert long.num_frames == 768 and long.clamped == ('max_frames', 'model_seq_len')
    hd = predict_video_geometry(width=1920, height=1080, total_frames=60, video_fps=30.0, settings=VideoSettings())
    assert hd.clamped == ('max_pixels',) and hd.tokens_per_step <= 768
    short = predict_video_geometry(width=64, height=48, total_frames=30, video_fps=30.0, settings=VideoSettings())
    assert short.num_frames == 4 and short.clamped == ('min_frames', 'min_pixels')
    for seq_len in (16000, 60000):  # 16000: the floor of 1.05 * min_pixels lifts the budget again
        tight = predict_video_geometry(width=1920, height=1080, total_frames=30 * 600, video_fps=30.0,
                                       settings=VideoSettings(model_seq_len=seq_len))
        assert tight.clamped == ('max_frames', 'model_seq_len')
    assert tight.num_tokens <= 60000 * 0.9
    row = predict_video_geometry(width=1920, height=1080, total_frames=300, video_fps=30.0,
                                 settings=VideoSettings(), row_kwargs={'max_pixels': 200000})
    assert row.clamped == ('max_pixels',) and row.resized_width * row.resized_height <= 200000


def test_image_list_geometry():
    geo = predict_image_list_geometry(sizes=[(96, 72)] * 5, version='v3', settings=VideoSettings(patch_size=16))
    assert geo.num_frames == 6 and geo.padded_frames == 1 and geo.sample_fps == 2.0
    assert geo.timestamps == ('<0.2 seconds>', '<1.2 seconds>', '<2.2 seconds>')
    with pytest.raises(VideoError, match='one size'):
        predict_image_list_geometry(sizes=[(96, 72), (960, 720)])
    with pytest.raises(VideoError, match='at least one frame'):
        predict_image_list_geometry(sizes=[])


@pytest.mark.parametrize('kwargs,match', [
    (dict(total_frames=1, video_fps=30.0), r'must be in \[2, 1\]'),
    (dict(total_frames=0, video_fps=30.0), 'frame count must be positive'),
    (dict(total_frames=30, video_fps=0.0), 'frame rate must be positive'),
    (dict(total_frames=30, video_fps=math.nan), 'frame rate must be positive'),
    (dict(total_frames=300, video_fps=30.0, row_kwargs={'video_start': 5, 'video_end': 4}), 'holds no two frames'),
    (dict(total_frames=300, video_fps=30.0, row_kwargs={'fps': 1, 'nframes': 8}), 'accepts one'),
    (dict(total_frames=300, video_fps=30.0, row_kwargs={'nframes': 400}), r'must be in \[2, 300\]'),
])
def test_refusals_name_the_rule(kwargs, match):
    with pytest.raises(VideoError, match=match):
        predict_video_geometry(width=64, height=48, **kwargs)
