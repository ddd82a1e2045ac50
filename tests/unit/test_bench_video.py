"""Benchmark 6 (video): the header path and fetch_video agree on every clip timed, the figures carry
their goals, and the plan dataset holds one distinct path per video."""
import json
import os

import pytest

from swift_ext.cli.bench import Context
from swift_ext.cli.bench import video as bench_video
from swift_ext.video_io import read_video_header, video_backend

pytestmark = pytest.mark.skipif(video_backend() == 'torchvision', reason='no video reader (swift-ext[video])')


@pytest.mark.tiny  # runs the bench command in a child process
def test_quick_run_measures_both_paths_and_plan(tmp_path):
    ctx = Context(quick=True, rounds=1, work=str(tmp_path))
    figures = {f.name: f for f in bench_video.run(ctx)}
    assert ctx.failures == []  # fetch_video gave the frames and size the header predicted, on every clip
    for label in ('short clips', '60 s clip', 'MKV / WebM (PyAV header)'):
        ratio = figures[f'fetch_video / header, {label}']
        assert ratio.goal.op == '>=' and ratio.goal.threshold == 1000
        header = figures[f'video header + predict, {label}'].values[0]
        decode = figures[f'fetch_video (decode + resize), {label}'].values[0]
        assert ratio.values[0] == pytest.approx(decode * 1e3 / header)
    plan = figures['plan 200 videos: wall']
    assert plan.goal.threshold == 60 and plan.values[0] > 0
    assert '200 files' in ctx.notes[6][0]


def test_plan_dataset_has_a_path_per_video(tmp_path):
    dataset = bench_video.write_video_dataset(str(tmp_path), 30)
    rows = [json.loads(line) for line in open(dataset)]
    paths = [r['videos'][0] for r in rows]
    assert len(set(paths)) == 30 and all(os.path.isfile(p) for p in paths)
    assert sum('chat_template_kwargs' in r for r in rows) == 6
    assert read_video_header(paths[0]).total_frames > 0
