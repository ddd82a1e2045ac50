"""`swift-ext plan` on video rows: each video's frames and tokens from its header equal the header
prediction (and a real ms-swift encode), rows clamped by FPS_MAX_FRAMES or the token budget are
flagged by row number, and bad videos are named, never a traceback."""
import json

import pytest

from swift_ext.cli import plan
from swift_ext.testing.videos import make_frame_images, make_video
from swift_ext.video_io import predict_from_source, video_backend


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp('plan_video')
    paths = {'short': make_video(str(root / 'short.mp4'), num_frames=30, fps=10, width=64, height=48),
             'long': make_video(str(root / 'long.mp4'), num_frames=600, fps=30, width=96, height=72),
             'wide': make_video(str(root / 'wide.mp4'), num_frames=40, fps=10, width=640, height=480)}
    (root / 'bad.mp4').write_bytes(b'this is not a video')
    paths['bad'] = str(root / 'bad.mp4')
    paths['frames'] = make_frame_images(str(root / 'frames'), num_frames=5, width=64, height=48)
    return root, paths


def _row(video, **kwargs):
    row = {'messages': [{'role': 'user', 'content': '<video>When?'}], 'videos': [video]}
    if kwargs:
        row['chat_template_kwargs'] = kwargs
    return row


def _plan(tmp_path, rows, capsys, *args, template='qwen2_5_vl_geo'):
    path = tmp_path / 'data.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    capsys.readouterr()
    code = plan.main([str(path), '--template', template, '--json', '--workers', '1', *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)['videos']


def test_frames_and_tokens_are_the_header_prediction(videos, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('FPS_MAX_FRAMES', '16')
    monkeypatch.setenv('VIDEO_MAX_TOKEN_NUM', '64')
    _, v = videos
    rows = [_row(v['short']), _row(v['long']), _row(v['long'], video_start=2.0, video_end=6.0),
            _row(v['wide'], fps=1.0), _row(v['frames'])]
    out = _plan(tmp_path, rows, capsys)
    expected = [predict_from_source(r['videos'][0], version='v2_5', row_kwargs=r.get('chat_template_kwargs'))
                for r in rows]
    assert out['videos'] == 5 and out['rows_with_videos'] == 5
    assert out['video_tokens_total'] == sum(g.num_tokens for g in expected)
    assert out['frames_per_video']['max'] == max(g.num_frames for g in expected) == 16
    assert out['seconds_total'] == pytest.approx(3.0 + 20.0 + 20.0 + 4.0 + 6 / 2.0)
    # the 20 s video at FPS=2 wants 40 frames: FPS_MAX_FRAMES=16 cuts it (row 2), its 4 s clip is not cut
    flagged = {x['row']: x for x in out['flagged']}
    assert flagged[2]['clamped'][0] == 'max_frames' and (flagged[2]['frames'], flagged[2]['frames_at_fps']) == (16, 40)
    assert 3 not in flagged or 'max_frames' not in flagged[3]['clamped']
    # 640x480 frames over the 64-token per-frame budget are shrunk (row 4)
    assert 'max_pixels' in flagged[4]['clamped'] and flagged[4]['video_tokens'] == expected[3].num_tokens
    assert out['flagged_count'] == sum(bool({'max_frames', 'max_pixels', 'model_seq_len'} & set(map(str, g.clamped)))
                                       for g in expected)


def test_the_sequence_budget_is_flagged(videos, tmp_path, capsys, monkeypatch):
    # MODEL_SEQ_LEN shrinks every frame of a long sample so that all its frames fit
    monkeypatch.setenv('MODEL_SEQ_LEN', '2000')
    _, v = videos
    out = _plan(tmp_path, [_row(v['wide'], fps=4.0)], capsys)
    geo = predict_from_source(v['wide'], version='v2_5', row_kwargs={'fps': 4.0},
                              env={'MODEL_SEQ_LEN': '2000'})
    assert 'model_seq_len' in map(str, geo.clamped)
    (x,) = out['flagged']
    assert x['clamped'] == ['model_seq_len'] and x['video_tokens'] == geo.num_tokens


def test_bad_videos_are_named_and_the_plan_goes_on(videos, tmp_path, capsys):
    root, v = videos
    rows = [_row(v['bad']), _row(str(root / 'missing.mp4')), _row(v['short'], fps='fast'), _row(v['short'])]
    path = tmp_path / 'data.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    code = plan.main([str(path), '--template', 'qwen2_5_vl_geo', '--workers', '1'])
    out = capsys.readouterr()
    assert code == 0 and 'Traceback' not in out.err + out.out
    assert f'row 1 video 0: {v["bad"]}: not a readable video' in out.out
    assert f'row 2 video 0: {root / "missing.mp4"}: video file does not exist.' in out.out
    assert 'row 3 video 0: ' in out.out and 'Videos that will fail: 3 (in 3 rows)' in out.out


def test_a_template_without_video_geometry_says_so(videos, tmp_path, capsys):
    _, v = videos
    out = _plan(tmp_path, [_row(v['short'])], capsys, template='internvl2_5_geo')
    assert out['videos_not_planned'] == 1 and 'has no video geometry' in out['not_planned_because']


@pytest.mark.tiny  # plan starts worker processes
def test_two_workers_merge_the_video_sums(videos, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plan.run, 'CHUNK_ROWS', 2)
    _, v = videos
    rows = [_row(v['short'])] * 5 + [_row(v['long'])] * 3
    out = _plan(tmp_path, rows, capsys, '--workers', '2')
    one = _plan(tmp_path, rows, capsys)
    assert out == one and out['videos'] == 8


@pytest.mark.skipif(video_backend() == 'torchvision', reason='no video reader (swift-ext[video])')
def test_plan_equals_a_real_encode(videos, tmp_path, capsys, tiny_model):
    from swift.model import get_processor
    from swift.template import get_template
    _, v = videos
    tpl = get_template(get_processor(tiny_model('qwen2_5_vl'), model_type='qwen2_5_vl'), template_type='qwen2_5_vl')
    tpl.set_mode('train')
    row = _row(v['long'], video_start=1.0, video_end=5.0)
    out = _plan(tmp_path, [row], capsys)
    encoded = tpl.encode({**row, 'messages': row['messages'] + [{'role': 'assistant', 'content': 'x'}]})
    t, h, w = encoded['video_grid_thw'][0].tolist()
    assert out['video_tokens_total'] == t * h * w // 4 and out['frames_per_video']['max'] == 2 * t
