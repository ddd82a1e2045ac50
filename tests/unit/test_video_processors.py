"""Predicted video geometry against the real Qwen2.5-VL / Qwen3-VL processors (tiny local checkpoints):
``video_grid_thw``, tokens, and Qwen3-VL's ``<t seconds>`` text, over a thousand random videos each."""
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swift_ext.geometry import VideoError
from swift_ext.video import VideoSettings, predict_video_geometry

torch = pytest.importorskip('torch')

VIDEO_PAD = 151656
# Small budgets keep every frame under ~64 tokens and at most 24 frames: the processors run on real
# tensors, so a thousand cases stay within seconds.
small_settings = st.builds(
    VideoSettings, patch_size=st.just(14), fps=st.floats(0.2, 6.0), fps_min_frames=st.integers(1, 8),
    fps_max_frames=st.integers(2, 24), video_min_token_num=st.integers(1, 16), video_max_token_num=st.integers(1, 64),
    model_seq_len=st.one_of(st.just(128000), st.integers(200, 4000)))


@st.composite
def small_videos(draw, patch_size):
    s = draw(small_settings)
    s = VideoSettings(**{**s.__dict__, 'patch_size': patch_size})
    fps = draw(st.one_of(st.sampled_from([24000 / 1001, 25.0, 30.0, 29.97, 60.0]), st.floats(0.5, 120.0)))
    total = draw(st.integers(2, 3000))
    row = {}
    if draw(st.booleans()):
        duration = total / fps
        row['video_start'] = draw(st.floats(0.0, duration))
        row['video_end'] = draw(st.floats(0.0, duration + 1))
    if draw(st.integers(0, 4)) == 0:
        row['nframes'] = draw(st.integers(2, 24))
    return draw(st.integers(16, 4000)), draw(st.integers(16, 4000)), total, fps, s, row


@pytest.fixture(scope='module')
def processors(tiny_model):
    from swift.model import get_processor
    return {name: get_processor(tiny_model(name), model_type=name) for name in ('qwen2_5_vl', 'qwen3_vl')}


def _predict(case, version):
    width, height, total, fps, s, row = case
    try:
        return predict_video_geometry(width=width, height=height, total_frames=total, video_fps=fps, version=version,
                                      settings=s, row_kwargs=row)
    except VideoError:
        return None


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=small_videos(14))
def test_qwen2_5_vl_video_grid(processors, case):
    geo = _predict(case, 'v2_5')
    if geo is None:
        return
    frames = torch.zeros(geo.num_frames, 3, geo.resized_height, geo.resized_width, dtype=torch.uint8)
    out = processors['qwen2_5_vl'].video_processor(videos=[frames], do_resize=False, return_tensors='pt')
    assert tuple(out['video_grid_thw'][0].tolist()) == geo.grid
    assert int(out['video_grid_thw'][0].prod()) // 4 == geo.num_tokens
    assert geo.second_per_grid_ts == 2 / geo.sample_fps


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=small_videos(16), vllm=st.booleans())
def test_qwen3_vl_video_grid_and_timestamps(processors, case, vllm):
    geo = _predict(case, 'v3')
    if geo is None:
        return
    if vllm:  # the indices ms-swift hands vLLM, rebased to the clip's first frame
        geo = predict_video_geometry(width=case[0], height=case[1], total_frames=case[2], video_fps=case[3],
                                     version='v3', mode='vllm', settings=case[4], row_kwargs=case[5])
    base = round(geo.timestamp_origin * geo.video_fps)
    proc = processors['qwen3_vl']
    frames = torch.zeros(geo.num_frames, 3, geo.resized_height, geo.resized_width, dtype=torch.uint8)
    meta = {'fps': geo.video_fps, 'frames_indices': [i - base for i in geo.frame_indices],
            'total_num_frames': geo.end_frame - geo.start_frame + 1}
    out = proc(text=['<|vision_start|><|video_pad|><|vision_end|>'], videos=[frames], video_metadata=[meta],
               do_resize=False, do_sample_frames=False, return_tensors='pt')
    assert tuple(out['video_grid_thw'][0].tolist()) == geo.grid
    ids = out['input_ids'][0].tolist()
    assert ids.count(VIDEO_PAD) == geo.num_tokens
    text = proc.tokenizer.decode(ids)
    assert tuple(re.findall(r'<[0-9.]+ seconds>', text)) == geo.timestamps
