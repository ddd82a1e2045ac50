"""`swift-ext check` on video lines: rollout and training geometries of one video compared field by
field. The vLLM-mode time axis of ms-swift 4.6's Qwen3-VL template is verified on real encodes: the
same frames, ``<t seconds>`` counted from the clip start in the rollout prompt and from the video start
in training, and check names exactly that."""
import json

import pytest

from swift_ext import loglines, runlog
from swift_ext.cli import check
from swift_ext.cli.check_videos import compare_videos
from swift_ext.recorder import recorder
from swift_ext.testing.videos import make_video
from swift_ext.video_io import predict_from_source, video_backend

pytestmark = pytest.mark.skipif(video_backend() == 'torchvision', reason='no video reader (swift-ext[video])')
CLIP = {'video_start': 1.0, 'video_end': 4.0}


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    return make_video(str(tmp_path_factory.mktemp('v') / 'clip.mp4'), num_frames=180, fps=30, width=96, height=72)


def _encode(tiny_model, parent, mode, video, row_kwargs):
    from swift.model import get_processor
    from swift.template import get_template

    import swift_ext.plugin  # noqa: F401
    tpl = get_template(get_processor(tiny_model(parent), model_type=parent), template_type=parent + '_geo')
    tpl.set_mode(mode)
    row = {'messages': [{'role': 'user', 'content': '<video>When?'}], 'videos': [video]}
    if mode == 'train':
        row['messages'].append({'role': 'assistant', 'content': '<answer>1.5 - 2.5</answer>'})
    if row_kwargs:
        row['chat_template_kwargs'] = dict(row_kwargs)
    tpl.encode(row)
    recorder().flush()


def _check(capsys, *paths):
    capsys.readouterr()
    code = check.main([*map(str, paths)])
    text = capsys.readouterr()
    assert 'Traceback' not in text.out + text.err
    check.main([*map(str, paths), '--json'])
    return code, text.out, json.loads(capsys.readouterr().out)


def test_qwen3_vl_vllm_mode_counts_time_from_the_clip_start(tiny_model, video, log_dir, capsys):
    for mode in ('train', 'vllm'):
        _encode(tiny_model, 'qwen3_vl', mode, video, CLIP)
    code, text, report = _check(capsys, log_dir)
    train = predict_from_source(video, version='v3', mode='train', row_kwargs=CLIP)
    rollout = predict_from_source(video, version='v3', mode='vllm', row_kwargs=CLIP)
    assert code == 1 and report['same'] is False
    (example,) = report['videos']['examples']
    # the same frames, size and tokens; only the time axis differs
    assert set(example['differences']) == {'timestamps', 'timestamp_origin'} and example['vllm_clip_rebase']
    assert example['differences']['timestamps'] == [list(rollout.timestamps), list(train.timestamps)]
    assert example['differences']['timestamp_origin'] == [1.0, 0.0] and example['basis'] == 'handed_video'
    seconds = [[float(t.strip('<>').split()[0]) for t in g.timestamps] for g in (rollout, train)]
    assert seconds[1] == pytest.approx([s + 1.0 for s in seconds[0]], abs=0.11)  # one second apart, as printed
    assert f'timestamps: rollout [{", ".join(rollout.timestamps[:6])}' in text
    assert "ms-swift 4.6 hands vLLM the clip's frames_indices shifted" in text


@pytest.mark.parametrize('parent,row_kwargs', [('qwen3_vl', None), ('qwen2_5_vl', CLIP)])
def test_no_difference_without_a_clip_or_with_seconds_per_step(tiny_model, video, log_dir, capsys, parent,
                                                                row_kwargs):
    # without a clip the indices start at 0 (nothing to shift); Qwen2.5-VL tells time by seconds per step
    for mode in ('train', 'vllm'):
        _encode(tiny_model, parent, mode, video, row_kwargs)
    code, text, report = _check(capsys, log_dir)
    assert code == 0 and report['videos']['differ'] == 0 and report['videos']['compared'] == 1
    assert 'videos encoded for both rollouts and training: 1, 0 with different' in text


def test_another_fps_on_the_rollout_side_names_the_frames(video, tmp_path):
    # a rollout server started with FPS=4 samples other frames than the trainer at FPS=2
    train = predict_from_source(video, version='v2_5')
    rollout = predict_from_source(video, version='v2_5', mode='transformers', env={'FPS': '4'})
    (tmp_path / runlog.GEOMETRY_FILE).write_text(''.join(
        json.dumps(loglines.video_line(geometry=g, key=video, video_index=0, mode=m, template='qwen2_5_vl_geo',
                                       mismatch=None, sample_id='s')) + '\n'
        for g, m in ((train, 'train'), (rollout, 'transformers'))))
    result = compare_videos([str(tmp_path)])
    (example,) = result['examples']
    assert result['differ'] == 1 and not example['vllm_clip_rebase']
    assert example['differences']['sample_fps'] == [rollout.sample_fps, train.sample_fps] == [4.0, 2.0]
    assert example['differences']['frame_indices'] == [list(rollout.frame_indices), list(train.frame_indices)]
    assert {'num_tokens', 'second_per_grid_ts'} <= set(example['differences'])


def test_broken_and_foreign_lines_are_skipped(video, tmp_path):
    geo = predict_from_source(video, version='v2_5')
    good = loglines.video_line(geometry=geo, key=video, video_index=0, mode='train', template='t', mismatch=None,
                               sample_id='s')
    lines = [json.dumps(good), '{not json', json.dumps({**good, 'mode': 'rollout', 'frame_indices': {'x': 1}}),
             json.dumps({**good, 'mode': 'rollout', 'video': 5}), json.dumps({**good, 'mode': 'rollout'})]
    (tmp_path / runlog.GEOMETRY_FILE).write_text('\n'.join(lines) + '\n')
    result = compare_videos([str(tmp_path)])
    assert result['compared'] == 1 and result['differ'] == 0
