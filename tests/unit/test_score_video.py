"""`swift-ext score` on video rows of a `swift infer` result: temporal IoU against ``solution`` as
``geo_tiou`` computes it (clip window, the prompt's time axis), R@0.3/0.5/0.7, rows not scored named,
and the --html page's frame strips."""
import json

import pytest

from swift_ext.cli import score
from swift_ext.temporal import tiou_score
from swift_ext.testing.videos import make_video
from swift_ext.video_io import predict_from_source, video_backend

pytestmark = pytest.mark.skipif(video_backend() == 'torchvision', reason='no video reader (swift-ext[video])')


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp('score_video')
    (root / 'bad.mp4').write_bytes(b'not a video')
    return root, make_video(str(root / 'clip.mp4'), num_frames=120, fps=30, width=96, height=72)


def _row(video, response, solution, **kwargs):
    row = {'response': response, 'videos': [video], 'solution': solution,
           'messages': [{'role': 'user', 'content': '<video>When?'}]}
    if kwargs:
        row['chat_template_kwargs'] = kwargs
    return row


def _score(tmp_path, capsys, rows, *argv, template='qwen2_5_vl_geo'):
    path = tmp_path / 'result.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    capsys.readouterr()
    code = score.main([str(path), '--template', template, '--json', *argv])
    out = capsys.readouterr()
    assert code == 0 and 'Traceback' not in out.err
    return json.loads(out.out)


def test_temporal_iou_and_recall(videos, tmp_path, capsys):
    root, video = videos
    rows = [_row(video, '<answer>1.0 - 2.0</answer>', [1.0, 2.0]),      # exact: 1.0
            _row(video, 'from 1.5 to 2.5', [1.0, 2.0]),                  # 0.5 / 1.5 = 1/3
            _row(video, '[0.0, 3.0]', [1.0, 2.0]),                       # 1/3
            _row(video, 'I cannot tell.', [1.0, 2.0]),                   # no interval: 0
            _row(video, '[1.2, 2.0]', [1.0, 2.0], video_start=0.5, video_end=3.0),  # 0.8
            _row(str(root / 'bad.mp4'), '[1, 2]', [1.0, 2.0]),           # not scored: the video
            _row(video, '[1, 2]', [7.0, 9.0])]                           # not scored: outside the video
    out = _score(tmp_path, capsys, rows)
    v = out['video']
    expected = [tiou_score(r['response'], r['solution']) for r in rows[:4]] + [0.8]
    assert v['rows'] == 5 and out['scored'] == 5 and out['not_scored'] == 2
    assert v['mean_tiou'] == pytest.approx(sum(expected) / 5)
    assert (v['r@0.3'], v['r@0.5'], v['r@0.7']) == (pytest.approx(4 / 5), pytest.approx(2 / 5), pytest.approx(2 / 5))
    assert v['no_interval'] == 1 and v['time_axis'] == 'source'
    problems = {p['kind']: p for p in out['problems']}
    assert problems['video unreadable']['row_numbers'] == [6] and 'bad.mp4: not a readable video' in \
        problems['video unreadable']['example']
    assert problems['solution']['row_numbers'] == [7] and 'outside the clip' in problems['solution']['example']
    geo = predict_from_source(video, version='v2_5')
    assert list(v['by_sampling_step']) == ['1-2 s'] and geo.sampling_step == 1.0
    # --json's per_row: each video row's tIoU and geometry, or why it was not scored
    per = {r['row']: r for r in out['per_row']}
    assert per[1]['tiou'] == 1.0 and per[4]['no_interval'] and per[1]['frames'] == geo.num_frames
    assert (per[6]['not_scored'], per[7]['not_scored']) == ('video unreadable', 'solution')


def test_vllm_backend_reads_qwen3_times_from_the_clip_start(videos, tmp_path, capsys):
    # ms-swift's vLLM mode prompts Qwen3-VL with times counted from the clip start: 0.5 s there is 1.5 s
    _, video = videos
    rows = [_row(video, '<answer>0.5 - 1.5</answer>', [1.5, 2.5], video_start=1.0, video_end=3.5)]
    vllm = _score(tmp_path, capsys, rows, '--infer_backend', 'vllm', template='qwen3_vl_geo')['video']
    pt = _score(tmp_path, capsys, rows, template='qwen3_vl_geo')['video']
    assert vllm['mean_tiou'] == 1.0 and vllm['time_axis'] == 'clip start (vLLM mode)'
    assert pt['mean_tiou'] == 0.0 and pt['time_axis'] == 'source'


def test_text_and_html_with_frame_strips(videos, tmp_path, capsys):
    root, video = videos
    rows = [_row(video, '[1.0, 2.0]', [1.0, 2.0]), _row(video, '[0, 1]', [1.0, 2.0])]
    path = tmp_path / 'result.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    page = tmp_path / 'out' / 'score.html'
    (tmp_path / 'out').mkdir()
    assert score.main([str(path), '--template', 'qwen2_5_vl_geo', '--html', str(page), '--images-under',
                       str(root)]) == 0
    text = capsys.readouterr().out
    assert 'Video rows 2: mean tIoU 0.5000   R@0.3 50.0%   R@0.5 50.0%   R@0.7 50.0%' in text
    html = page.read_text()
    assert 'Video rows: temporal IoU' in html and html.count('<img src="data:image/jpeg;base64,') == 2
    assert 'tIoU 1.000' in html and 'tIoU 0.000' in html
    # a video outside the confirmed folders is named, not drawn
    assert score.main([str(path), '--template', 'qwen2_5_vl_geo', '--html', str(page)]) == 0
    html = page.read_text()
    assert 'data:image/jpeg' not in html and 'not under a confirmed folder' in html
