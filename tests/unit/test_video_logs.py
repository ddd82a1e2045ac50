"""Video lines in the run log: the line contract (``runlog.VIDEO_HEAD``, the geometry, ``VIDEO_TAIL``), the
fast writer against the reference, the join of a video-only row with the step that trained on it, and the
``vision/`` video metrics; image readers (the metrics, review) leave video lines out of image figures."""
import json

import pytest

import swift_ext.plugin  # noqa: F401
from swift_ext import callback, loglines, runlog
from swift_ext.geometry import VideoGeometry
from swift_ext.recorder import batch_fingerprint, recorder
from swift_ext.steps import trained_steps
from swift_ext.testing.videos import make_video
from swift_ext.video import predict_video_geometry
from swift_ext.video_io import video_backend

GEO = predict_video_geometry(width=96, height=72, total_frames=90, video_fps=30.0, version='v3')


def _line(**changes):
    line = loglines.video_line(geometry=GEO, key='/data/v.mp4', video_index=0, mode='train', template='qwen3_vl_geo',
                               mismatch=None, sample_id='s', step=3, when=1.5)
    return {**line, **changes}


def test_the_line_holds_the_contract_fields_in_order():
    line = _line()
    names = list(line)
    geometry = list(GEO.to_dict())
    assert names == [*runlog.VIDEO_HEAD, *geometry, *runlog.VIDEO_TAIL]
    assert runlog.line_kind(line) == 'video' and runlog.line_kind({'image': 'x'}) == 'image'
    assert VideoGeometry.from_dict(json.loads(json.dumps(line))) == GEO


def test_the_fast_writer_writes_the_reference():
    lines = loglines.ImageLines(mode='train', template='qwen3_vl_geo', sample_id=lambda: 's', images=[],
                                basis='encode', when=1.5, videos=[(GEO, '/data/v.mp4', 0, None)])
    text = lines.render(step=3, batch='b', row='r', encode=4)
    assert json.loads(text) == _line(batch='b', row='r', encode=4) and lines.count == 1


def test_a_failed_video_line():
    line = loglines.failure_line(key='/data/v.mp4', image_index=1, mode='vllm', template='t', error='bad',
                                 sample_id='s', kind='video', when=2.0)
    assert list(line) == [*runlog.VIDEO_HEAD, *runlog.FAILURE_TAIL]
    assert (line['video'], line['video_index'], line['mode']) == ('/data/v.mp4', 1, 'rollout')


def test_video_metrics_and_no_image_metric_from_them():
    capped = _line(clamped=['max_frames'])
    failed = {'mode': 'train', 'kind': 'video', 'video': '/x.mp4', 'video_index': 0, 'error': 'bad'}
    values = callback.step_values([_line(), capped, failed, failed, _line(mode='rollout')])
    assert values['frames_per_video_mean'] == [GEO.num_frames] * 2
    assert values['video_tokens_per_video_max'] == [GEO.num_tokens] * 2
    assert values['videos_clamped_by_max_frames_frac'] == [0.0, 1.0]
    assert values['videos_per_step'] == [2] and values['failed_videos_per_step'] == [1]  # one video, tried twice
    assert values['images_per_step'] == [0] and 'visual_tokens_per_image_mean' not in values


def test_a_run_with_videos_counts_0_for_a_step_without_one():
    metrics = callback.new_metrics()
    callback.update_metrics(metrics, [_line()], video_run=True)
    callback.update_metrics(metrics, [], video_run=True)
    out = callback.compute_metrics(metrics)
    assert out['vision/videos_per_step'] == 0.5 and out['vision/frames_per_video_mean'] == GEO.num_frames
    metrics = callback.new_metrics()
    callback.update_metrics(metrics, [])
    assert not any('video' in k for k in callback.compute_metrics(metrics))  # image runs: no video keys


@pytest.mark.skipif(video_backend() == 'torchvision', reason='no video reader (swift-ext[video])')
def test_a_video_only_row_joins_the_step_that_trained_on_it(tiny_model, tmp_path, log_dir):
    # The collate names rows that carry video data too, so a video's line gets the step of its batch.
    from swift.model import get_processor
    from swift.template import get_template
    video = make_video(str(tmp_path / 'v.mp4'), num_frames=30, fps=10, width=64, height=48)
    tpl = get_template(get_processor(tiny_model('qwen2_5_vl'), model_type='qwen2_5_vl'),
                       template_type='qwen2_5_vl_geo')
    tpl.set_mode('train')
    rows = [tpl.encode({'messages': [{'role': 'user', 'content': '<video>When?'},
                                     {'role': 'assistant', 'content': f'[{i}, 2]'}], 'videos': [video]})
            for i in range(2)]
    rec = recorder()
    rec.trainer = True
    try:
        collated = tpl.data_collator(rows)
        rec.consume(batch_fingerprint(collated), 5)
    finally:
        rec.flush()
        rec.trainer = False
        rec.consumed.clear()
    lines = [json.loads(x) for x in (log_dir / runlog.GEOMETRY_FILE).read_text().splitlines()]
    events = [json.loads(x) for x in (log_dir / runlog.BATCHES_FILE).read_text().splitlines()]
    assert len(events[0]['rows']) == 2 and [x['step'] for x in lines] == [5, 5]
    _, per_step = trained_steps(lines, events)
    assert [x['kind'] for x in per_step[5]] == ['video', 'video']


def test_review_leaves_video_lines_out_of_its_image_figures(tmp_path):
    from swift_ext.cli.review.aggregate import read_geometry
    from swift_ext.settings import default_settings
    geo, clamped = default_settings('qwen2_5_vl_geo').predict(width=640, height=480)
    image = loglines.image_line(geometry=geo, key='/img/a.png', image_index=0, mode='train', template='t_geo',
                                clamped=clamped, mismatch=None, sample_id='s', step=1)
    failed_video = loglines.failure_line(key='/v.mp4', image_index=0, mode='train', template='t', error='bad',
                                         sample_id='s', kind='video')
    (tmp_path / runlog.GEOMETRY_FILE).write_text(''.join(json.dumps(x) + '\n' for x in (image, _line(), failed_video)))
    stats = read_geometry(str(tmp_path))
    assert stats.video_lines == 2 and stats.by_mode['train'].images == 1 and stats.by_mode['train'].failures == 0
