"""Video geometry without a template in the process: the public ``predict_video_geometry``, a dataset row's
videos from their headers (what ``plan`` will call), the frames a geometry names decoded for a contact sheet
(what ``show`` will call), the reward's time axis; named errors for what cannot be read."""
import pytest

import swift_ext
from swift_ext.families import describe, family_of, template_names
from swift_ext.families.base import RECORDED_VIDEO, VIDEO_SUPPORT
from swift_ext.geometry import VideoError
from swift_ext.testing.videos import frame_index, make_frame_images, make_video
from swift_ext.video_rows import predict_source, row_videos, sampled_frames, time_offset, video_settings_for


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    return make_video(str(tmp_path_factory.mktemp('v') / 'clip.mp4'), num_frames=60, fps=20, width=96, height=72)


def test_every_template_says_what_it_does_with_a_video():
    for row in describe():
        family, spec = family_of(row['template'])
        assert row['video'] in VIDEO_SUPPORT
        assert family.records_video(spec.parent) == (row['video'] in RECORDED_VIDEO)
        assert not family.records_video(spec.parent) or family.video_geometry
    recorded = {r['template'] for r in describe() if r['video'] in RECORDED_VIDEO}
    assert {'qwen2_5_vl_geo', 'qwen3_vl_geo', 'qwen2_5_omni_geo', 'glm4_5v_geo', 'gemma4_geo'} <= recorded


def test_public_prediction_equals_the_header_path(clip):
    geo = predict_source('qwen3_vl_geo', clip, row_kwargs={'video_start': 0.5}, env={})
    same = swift_ext.predict_video_geometry('qwen3_vl', width=96, height=72, total_frames=60, video_fps=20.0,
                                            row_kwargs={'video_start': 0.5}, env={})
    assert geo == same and geo.frame_indices[0] == 10 and geo.timestamps[0] == '<0.9 seconds>'


def test_the_environment_is_read_as_ms_swift_reads_it():
    kwargs = dict(width=640, height=360, total_frames=3000, video_fps=30.0)
    capped = swift_ext.predict_video_geometry('qwen2_5_vl_geo', env={'FPS_MAX_FRAMES': '8'}, **kwargs)
    assert capped.num_frames == 8 and capped.clamped == ('max_frames',)
    # VIDEO_MAX_PIXELS becomes a token count with the model's patch (compat_qwen_vl_utils), unless set itself
    small = swift_ext.predict_video_geometry(
        'qwen3_vl_geo', env={'VIDEO_MAX_PIXELS': str(64 * 32 * 32), 'VIDEO_MIN_PIXELS': str(16 * 32 * 32)}, **kwargs)
    assert 16 <= small.tokens_per_step <= 64 and small.clamped == ('max_pixels',)
    # the Qwen3.5 embedding loader's own defaults: FPS=1, FPS_MAX_FRAMES=64
    emb = swift_ext.predict_video_geometry('qwen3_5_emb_geo', env={}, **kwargs)
    assert emb.num_frames == 64 and emb.sample_fps < 1


@pytest.mark.parametrize('template,match', [('internvl3_5_geo', 'has no video geometry'),
                                            ('glm4v_geo', 'has no video geometry'),
                                            ('gemma4_geo', 'its processor samples the frames')])
def test_templates_without_header_prediction_are_named(template, match):
    with pytest.raises(ValueError, match=match):
        swift_ext.predict_video_geometry(template, width=64, height=48, total_frames=30, video_fps=10.0, env={})


def test_a_refused_video_is_a_named_error():
    with pytest.raises(VideoError, match=r'video: the clip video_start=5, video_end=5.2 holds no two frames'):
        swift_ext.predict_video_geometry('qwen2_5_vl_geo', width=64, height=48, total_frames=30, video_fps=10.0,
                                         row_kwargs={'video_start': 5, 'video_end': 5.2}, env={})


def test_a_rows_videos_from_their_headers(clip, tmp_path):
    frames = make_frame_images(str(tmp_path / 'f'), num_frames=3, width=64, height=48)
    row = {'videos': [clip, frames, str(tmp_path / 'missing.mp4'), clip],
           'chat_template_kwargs': {'fps': 4}}
    settings = video_settings_for('qwen2_5_vl_geo', env={})
    whole, listed, missing, again = row_videos('qwen2_5_vl_geo', row, settings=settings)
    assert whole.num_frames == 12 and whole == again and listed.image_list and listed.padded_frames == 1
    assert isinstance(missing, VideoError) and 'missing.mp4: video file does not exist' in str(missing)
    hostile = row_videos('qwen2_5_vl_geo', {'videos': clip, 'chat_template_kwargs': {'fps': 'two'}},
                         settings=settings)
    assert len(hostile) == 1 and isinstance(hostile[0], VideoError) and 'clip.mp4' in str(hostile[0])
    assert row_videos('qwen2_5_vl_geo', {'images': ['x.png']}, settings=settings) == []


def test_the_sampled_frames_for_a_contact_sheet(clip):
    geo = predict_source('qwen2_5_vl_geo', clip, env={})
    frames = sampled_frames(clip, geo)
    assert [frame_index(f) for f in frames] == list(geo.frame_indices)
    assert {f.size for f in frames} == {(geo.resized_width, geo.resized_height)}
    few = sampled_frames(clip, geo, max_frames=3)
    assert [frame_index(f) for f in few] == [geo.frame_indices[i] for i in (0, 2, 5)]  # evenly spread


@pytest.mark.parametrize('axis,expected', [('prompt', 1.0), ('source', 0.0), ('clip', 1.0), ('bogus', 1.0)])
def test_time_axes(clip, axis, expected):
    geo = predict_source('qwen3_vl_geo', clip, row_kwargs={'video_start': 1.0}, mode='vllm', env={})
    assert time_offset(geo, axis) == expected


def test_rollout_and_training_differences(clip):
    from swift_ext.video_rows import differences
    train = predict_source('qwen3_vl_geo', clip, row_kwargs={'video_start': 1.0}, env={})
    rollout = predict_source('qwen3_vl_geo', clip, row_kwargs={'video_start': 1.0}, mode='vllm', env={})
    found = differences(train, rollout)
    assert sorted(found) == ['timestamp_origin', 'timestamps'] and found['timestamp_origin'] == [0.0, 1.0]
    assert differences(train, train) == {}


def test_every_geo_template_name_is_known():
    assert 'qwen3_vl_geo' in template_names()
