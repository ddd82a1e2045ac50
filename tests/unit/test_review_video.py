"""`swift-ext review` on a run with video lines: videos encoded per mode, frames and video tokens per
video, clamps and failures, and the report's frame strips (drawn only for files the embedding policy
confirms). The lines are the run-log contract's (``loglines.video_line``) over real generated videos."""
import json

import pytest

from swift_ext import loglines, runlog
from swift_ext.cli import review
from swift_ext.testing.videos import make_video
from swift_ext.video_io import predict_from_source, video_backend

pytestmark = pytest.mark.skipif(video_backend() == 'torchvision', reason='no video reader (swift-ext[video])')


@pytest.fixture
def run(tmp_path):
    run_dir = tmp_path / 'v0-20261206-000000'
    run_dir.mkdir()
    short = make_video(str(run_dir / 'short.mp4'), num_frames=30, fps=10, width=64, height=48)
    long = make_video(str(run_dir / 'long.mp4'), num_frames=300, fps=30, width=96, height=72)
    geos = {'short': predict_from_source(short, version='v2_5'),
            'long': predict_from_source(long, version='v2_5', env={'FPS_MAX_FRAMES': '8'}),
            'clip': predict_from_source(long, version='v2_5', row_kwargs={'video_start': 2.0, 'video_end': 6.0})}
    lines = []
    for step in range(3):
        for name, source in (('short', short), ('long', long), ('clip', long)):
            for mode in ('train', 'transformers'):
                lines.append(loglines.video_line(geometry=geos[name], key=source, video_index=0, mode=mode,
                                                 template='qwen2_5_vl_geo', mismatch=None, sample_id=f'{step}',
                                                 step=step))
    lines.append(loglines.failure_line(key=str(run_dir / 'gone.mp4'), image_index=0, mode='train',
                                       template='qwen2_5_vl_geo', error='gone.mp4: video file does not exist.',
                                       sample_id='x', kind='video'))
    (run_dir / runlog.GEOMETRY_FILE).write_text(''.join(json.dumps(x) + '\n' for x in lines))
    return run_dir, geos, (short, long)


def test_video_statistics(run, capsys):
    run_dir, geos, _ = run
    assert review.main([str(run_dir), '--json', '--no-plots']) == 0
    out = json.loads(capsys.readouterr().out)
    train = out['videos']['by_mode']['train']
    assert out['videos']['main_mode'] == 'train' and set(out['videos']['by_mode']) == {'train', 'rollout'}
    assert (train['videos'], train['failures'], train['distinct_videos']) == (9, 1, 2)
    frames = sorted(g.num_frames for g in geos.values())
    assert train['frames_per_video']['max'] == frames[-1] == 8 and train['frames_per_video']['min'] == frames[0]
    assert train['video_tokens_per_video']['mean'] == pytest.approx(sum(g.num_tokens for g in geos.values()) / 3)
    assert train['clamped']['max_frames'] == 3  # the 10 s video under FPS_MAX_FRAMES=8, once per step
    assert train['failure_messages'] == {'gone.mp4: video file does not exist.': 1}
    assert not any('video line' in p for p in out['problems'])


def test_text_and_frame_strips(run, capsys, tmp_path):
    run_dir, geos, (short, _) = run
    assert review.main([str(run_dir), '--no-plots', '--gallery', '2']) == 0
    text = capsys.readouterr().out
    assert 'Videos (train encodes): 9 encodes of 2 distinct video(s)   failures: 1' in text
    assert 'clamped: ' in text and 'max_frames 3' in text
    html = (run_dir / 'review' / 'report.html').read_text()
    assert '<h2>Videos</h2>' in html and html.count('<img src="data:image/jpeg;base64,') == 2  # under the run folder
    assert f'{geos["short"].num_frames} frames of 30 at 2 fps' in html


def test_a_video_outside_confirmed_folders_is_not_drawn(run, capsys, tmp_path):
    run_dir, _, _ = run
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    video = make_video(str(elsewhere / 'v.mp4'), num_frames=20, fps=10, width=64, height=48)
    line = loglines.video_line(geometry=predict_from_source(video, version='v2_5'), key=video, video_index=0,
                               mode='train', template='qwen2_5_vl_geo', mismatch=None, sample_id='s')
    (run_dir / runlog.GEOMETRY_FILE).write_text(json.dumps(line) + '\n')
    assert review.main([str(run_dir), '--no-plots', '--gallery', '3']) == 0
    html = (run_dir / 'review' / 'report.html').read_text()
    assert 'data:image/jpeg' not in html and 'not under a confirmed folder' in html
