"""`swift-ext review` on synthetic run folders: the numbers it computes, and what it writes."""
import json
import os
from collections import Counter

import numpy as np
import pytest

from swift_ext import loglines
from swift_ext.cli import review
from swift_ext.cli.clamps import counts
from swift_ext.cli.review.aggregate import percentile
from swift_ext.cli.review.summary import summarize
from swift_ext.settings import default_settings

SETTINGS = default_settings('qwen2_5_vl', max_pixels=401408)
# Original sizes of the train-encoded images, rank 0 then rank 1.
SIZES_RANK0 = [(640, 480), (1920, 1080), (50, 60), (300, 2000), (448, 448)]
SIZES_RANK1 = [(1280, 720), (28, 28), (3000, 3000), (800, 600)]


def geo_line(width, height, *, step, rank, mode='train', mismatch=None):
    geo, clamped = SETTINGS.predict(width=width, height=height)
    r = {'step': step, 'rank': rank, 'pid': 100 + rank, 'mode': mode, 'sample_id': 's',
         'image_index': 0, 'image': f'/img/{width}x{height}.png', 'template': 'qwen2_5_vl_geo'}
    r.update(geo.to_dict())
    r.update({'clamped': clamped, 'mismatch': mismatch, 'error': None, 'time': 0.0})
    return r


def error_line(*, step, rank):
    return {'step': step, 'rank': rank, 'pid': 1, 'mode': 'train', 'sample_id': 's',
            'image_index': 0, 'image': '/img/missing.png', 'template': 'qwen2_5_vl_geo',
            'error': '/img/missing.png: image file does not exist.', 'time': 0.0}


def write_jsonl(path, rows, tail=''):
    with open(path, 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
        f.write(tail)


@pytest.fixture
def run_dir(tmp_path):
    """Two ranks (rank 1's file ends in a cut-off line), an error, a mismatch, rewards."""
    rank0 = [geo_line(w, h, step=1 + i // 3, rank=0) for i, (w, h) in enumerate(SIZES_RANK0)]
    rank0[1]['mismatch'] = {'num_tokens': [500, 510]}
    rank0.append(error_line(step=2, rank=0))
    rank0.append(geo_line(640, 480, step=1, rank=0, mode='rollout'))  # not in the train stats
    rank1 = [geo_line(w, h, step=1 + i // 2, rank=1) for i, (w, h) in enumerate(SIZES_RANK1)]
    write_jsonl(tmp_path / 'image_geometry.jsonl', rank0)
    write_jsonl(tmp_path / 'image_geometry.rank1.jsonl', rank1, tail='{"step": 3, "rank": 1, "mo')
    logs = [{'loss': 1.0, 'rewards/GeoIoU/mean': 0.2, 'rewards/GeoIoU/std': 0.1, 'reward': 0.2,
             'vision/visual_tokens_per_image_mean': 300.0, 'global_step/max_steps': '1/2'},
            {'loss': 0.9, 'rewards/GeoIoU/mean': 0.4, 'rewards/GeoIoU/std': 0.1, 'reward': 0.4,
             'vision/visual_tokens_per_image_mean': 200.0, 'global_step/max_steps': '2/2'},
            {'train_runtime': 3.0, 'global_step/max_steps': '2/2'},
            {'global_step': 2, 'log_history': [{'rewards/GeoIoU/mean': 99.0}]}]
    write_jsonl(tmp_path / 'logging.jsonl', logs)
    tables = [{'step': ['1'] * 4, 'prompt': ['p'] * 4, 'completion': ['c'] * 4,
               'GeoIoU': [0.0, 0.2, 0.4, None], 'advantages': [0.0] * 4,
               'geo_visual_tokens': [100, 200, 300, 400]},
              {'step': ['2'] * 4, 'prompt': ['p'] * 4, 'completion': ['c'] * 4,
               'GeoIoU': [0.6, 0.8, 1.0, 1.0], 'advantages': [0.0] * 4,
               'geo_visual_tokens': [500, 600, 700, 800]}]
    write_jsonl(tmp_path / 'completions.jsonl', tables + tables[-1:])  # last step twice, as ms-swift does
    return tmp_path


def all_train_geometries():
    return [SETTINGS.predict(width=w, height=h) for w, h in SIZES_RANK0 + SIZES_RANK1]


def test_geometry_numbers(run_dir):
    s = summarize(str(run_dir)).to_json()
    geos = all_train_geometries()
    tokens = [g.num_tokens for g, _ in geos]
    assert s['mode'] == 'train'
    assert s['images'] == len(SIZES_RANK0) + len(SIZES_RANK1)  # both ranks, none lost
    assert s['records_by_rank'] == {'0': 7, '1': 4}
    assert s['records_by_mode'] == {'train': 10, 'rollout': 1}
    d = s['visual_tokens_per_image']
    assert d['p50'] == np.percentile(tokens, 50, method='inverted_cdf')
    assert d['p95'] == np.percentile(tokens, 95, method='inverted_cdf')
    assert (d['max'], d['min']) == (max(tokens), min(tokens))
    assert d['mean'] == pytest.approx(np.mean(tokens))
    resized_mp = [g.resized_width * g.resized_height / 1e6 for g, _ in geos]
    assert s['resized_megapixels']['mean'] == pytest.approx(np.mean(resized_mp))
    assert s['original_width']['max'] == 3000
    assert s['clamped'] == counts(c for _, c in geos)
    assert s['clamped']['min_pixels'] > 0
    assert s['failures'] == 1
    assert s['failure_messages'] == {'/img/missing.png: image file does not exist.': 1}
    assert s['mismatches'] == 1 and s['mismatch_fields'] == {'num_tokens': 1}
    assert 'tile_histogram' not in s  # a Qwen run has no tiles: no empty table
    assert s['encodes'] == 9 and s['unique_images'] == 9
    assert s['per_step']['1']['images'] == 5  # steps 1: 3 on rank 0, 2 on rank 1


def test_problems_are_reported_not_fatal(run_dir):
    s = summarize(str(run_dir)).to_json()
    files = {f['file']: f for f in s['files']}
    assert files['image_geometry.rank1.jsonl']['truncated_last_line']
    assert files['image_geometry.rank1.jsonl']['lines'] == 5
    assert files['completions.jsonl']['duplicate_lines'] == 1
    assert any('truncated' in p for p in s['problems'])
    os.remove(run_dir / 'completions.jsonl')
    s = summarize(str(run_dir)).to_json()
    assert 'completions.jsonl: missing' in s['problems']
    assert s['completion_rows'] == 0 and s['reward_by_token_quartile'] == []
    assert s['reward_means_logged'] == {'GeoIoU': pytest.approx(0.3)}


def test_rewards_and_token_quartiles(run_dir):
    s = summarize(str(run_dir)).to_json()
    assert s['reward_means_logged'] == {'GeoIoU': pytest.approx(0.3)}  # summary lines skipped
    assert s['reward_means_completions'] == {'GeoIoU': pytest.approx(4.0 / 7)}  # None skipped
    assert s['reward_missing_completions'] == {'GeoIoU': 1}  # ... and counted
    assert s['completion_rows'] == 8 and s['completions_joined_by']['column'] == 8
    quart = s['reward_by_token_quartile']
    assert [(g['min_tokens'], g['max_tokens'], g['rows']) for g in quart] == [
        (100, 200, 2), (300, 400, 2), (500, 600, 2), (700, 800, 2)]
    assert [g['reward_means']['GeoIoU'] for g in quart] == pytest.approx([0.1, 0.4, 0.7, 1.0])
    assert [p for p, _ in s['series']['vision/visual_tokens_per_image_mean']] == [1, 2]


def test_join_by_step_without_the_geometry_column(run_dir):
    tables = [{'step': ['1', '1'], 'GeoIoU': [0.0, 1.0]}, {'step': ['2'], 'GeoIoU': [0.5]}]
    write_jsonl(run_dir / 'completions.jsonl', tables)
    s = summarize(str(run_dir)).to_json()
    assert s['completions_joined_by'] == {'column': 0, 'step': 3, 'none': 0}
    # Step 1 has a rollout encode (the 640x480 image): its rows get that image's tokens.
    # Step 2 has none: its row gets the mean of step 2's train encodes (both ranks).
    step1 = SETTINGS.predict(width=640, height=480)[0].num_tokens
    geos = all_train_geometries()
    step2 = np.mean([g.num_tokens for g, _ in geos[3:5] + geos[7:9]])
    by_tokens = {g['min_tokens']: g for g in s['reward_by_token_quartile']}
    assert by_tokens[step1]['rows'] == 2 and by_tokens[step1]['reward_means']['GeoIoU'] == 0.5
    assert by_tokens[round(step2)]['rows'] == 1


def test_percentile_matches_numpy():
    rng = np.random.default_rng(0)
    values = rng.integers(1, 50, size=997)
    counter = Counter(values.tolist())
    for q in (1, 25, 50, 90, 95, 99, 100):
        assert percentile(counter, q) == np.percentile(values, q, method='inverted_cdf')
    assert percentile(Counter(), 50) is None


def test_tiled_runs_get_a_tile_histogram(tmp_path):
    ivl = default_settings('internvl3_5')
    rows = []
    for w, h in [(448, 448), (1000, 500), (2000, 400), (1000, 500)]:
        geo, clamped = ivl.predict(width=w, height=h)
        rows.append({'step': 1, 'rank': 0, 'mode': 'train', **geo.to_dict(), 'clamped': clamped,
                     'mismatch': None, 'error': None})
    write_jsonl(tmp_path / 'image_geometry.jsonl', rows)
    s = summarize(str(tmp_path)).to_json()
    expected = Counter(str(ivl.predict(width=w, height=h)[0].num_tiles)
                       for w, h in [(448, 448), (1000, 500), (2000, 400), (1000, 500)])
    assert s['tile_histogram'] == dict(expected)


def test_cli_writes_report_and_plots(run_dir, capsys):
    assert review.main([str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert 'Images (train encodes): 9' in out and 'report.html' in out
    report = run_dir / 'review' / 'report.html'
    assert report.exists()
    pngs = sorted(p.name for p in (run_dir / 'review').glob('*.png'))
    assert pngs == ['megapixels.png', 'reward_vs_tokens.png', 'rewards.png', 'vision_metrics.png',
                    'visual_tokens.png']
    page = report.read_text()
    assert page.count('data:image/png;base64,') == len(pngs)  # self-contained


def test_cli_json_and_no_plots(run_dir, tmp_path, capsys):
    out_dir = tmp_path / 'elsewhere'
    assert review.main([str(run_dir), '--json', '--no-plots', '--out', str(out_dir)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data['images'] == 9 and '_histograms' not in data
    assert (out_dir / 'report.html').exists() and not list(out_dir.glob('*.png'))


def test_cli_on_an_empty_or_missing_folder(tmp_path, capsys):
    assert review.main([str(tmp_path / 'nope')]) == 2
    assert review.main([str(tmp_path), '--no-plots']) == 2  # nothing to review: said, not an empty report
    assert 'holds no run logs' in capsys.readouterr().err
    write_jsonl(tmp_path / 'logging.jsonl', [])
    assert review.main([str(tmp_path), '--no-plots']) == 0
    assert 'no image_geometry*.jsonl' in capsys.readouterr().out


def test_unique_images_and_encodes_are_separate(tmp_path):
    # 3 images, each encoded 4 times (2 generations x rollout/train seen as train here).
    rows = [geo_line(w, h, step=1, rank=0) for _ in range(4) for w, h in [(640, 480), (50, 60), (448, 448)]]
    write_jsonl(tmp_path / 'image_geometry.jsonl', rows)
    s = summarize(str(tmp_path)).to_json()
    assert (s['encodes'], s['unique_images'], s['unique_images_exact']) == (12, 3, True)


def test_output_dir_with_runs_reviews_the_newest(tmp_path, run_dir, capsys):
    out = tmp_path / 'output'
    for name in ('v0-20260101-000000', 'v2-20260102-000000', 'v10-20260103-000000'):
        (out / name).mkdir(parents=True)
        write_jsonl(out / name / 'logging.jsonl', [{'loss': 1.0, 'global_step/max_steps': '1/1'}])
    assert review.main([str(out), '--no-plots']) == 0
    err = capsys.readouterr().err
    assert 'holds 3 run(s)' in err and 'reviewing the newest, v10-20260103-000000' in err
    assert (out / 'v10-20260103-000000' / 'review' / 'report.html').exists()
    assert not (out / 'v2-20260102-000000' / 'review').exists()
    assert review.main([str(out), '--no-plots', '--all']) == 0
    assert all((out / n / 'review' / 'report.html').exists() for n in ('v0-20260101-000000', 'v2-20260102-000000'))


def test_glob_metacharacters_in_the_run_folder(run_dir, tmp_path):
    # A folder named like a glob character class: the files are still found.
    odd = tmp_path / 'run[v1]'
    odd.mkdir()
    for f in run_dir.iterdir():
        if f.is_file():
            (odd / f.name).write_bytes(f.read_bytes())
    s = summarize(str(odd)).to_json()
    assert s['images'] == 9 and not any('no image_geometry' in p for p in s['problems'])


def test_report_page_is_for_people(run_dir):
    assert review.main([str(run_dir), '--no-plots']) == 0
    page = (run_dir / 'review' / 'report.html').read_text()
    assert 'class="sortable"' in page and '<script>' in page
    assert '0.22863859999999997' not in page and '{&quot;' not in page  # no raw floats, no JSON in cells
    assert 'values missing' in page and 'num_tokens 500 (predicted 510)' in page


def test_review_reads_the_names_the_writer_writes():
    """The run-log contract: one list of fields (runlog.RECORD_*), written by every writer, read by review."""
    from swift_ext import runlog
    from swift_ext.cli.review.read import GeoLine
    geo, clamped = SETTINGS.predict(width=640, height=480)
    written = loglines.image_line(geometry=geo, key='/img/a.png', image_index=0, mode='vllm', template='t_geo',
                                clamped=clamped, mismatch=None, sample_id='s')
    assert list(written) == [*runlog.RECORD_HEAD, *geo.to_dict(), *runlog.RECORD_TAIL]
    assert written['mode'] in runlog.MODES
    lines = loglines.ImageLines(mode='transformers', template='t_geo', sample_id=lambda: 's',
                              images=[(geo, '/img/a.png', 0, clamped, None)], basis='encode', when=0.0)
    [line] = lines.render(step=3, batch=None, row=None, encode=0).splitlines()
    assert list(json.loads(line)) == list(written)  # the batched writer writes the same fields
    failed = loglines.failure_line(key='sha1:' + '0' * 40, image_index=1, mode='train', template='t_geo',
                                 error='x' * 1000, sample_id='s')
    assert list(failed) == [*runlog.RECORD_HEAD, *runlog.FAILURE_TAIL, runlog.PAYLOAD_FIELD]
    assert len(failed['error']) == runlog.MAX_ERROR_CHARS
    # `kind`, `video` and `frame_indices` are a video line's (VIDEO_HEAD, its geometry): review sums videos apart
    from swift_ext.geometry import VideoGeometry
    video_fields = {*runlog.VIDEO_HEAD, *VideoGeometry.__dataclass_fields__}
    assert set(GeoLine.__struct_fields__) <= {*runlog.RECORD_HEAD, *runlog.RECORD_TAIL, *geo.to_dict(), *video_fields}
    assert 'kind' in runlog.VIDEO_HEAD


def test_the_summary_is_built_once(run_dir, tmp_path):
    """Writing the report changes nothing in the summary: --json prints what the page shows."""
    import dataclasses

    from swift_ext.cli.review.report import write_report
    summary = summarize(str(run_dir), gallery=4)
    before = json.dumps(summary.to_json(), default=str)
    write_report(summary, str(tmp_path), plots=False)
    assert json.dumps(summary.to_json(), default=str) == before and 'gallery' in before
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.mode = 'rollout'


def test_the_last_step_in_the_train_summary_line_is_read(run_dir):
    """Issue 26 item 1: with --logging_steps past the last step, ms-swift's GRPO trainer writes that
    step's metrics only into the train-summary line (the one with `train_runtime`)."""
    logs = [{'loss': 1.0, 'rewards/GeoIoU/mean': 0.2, 'global_step/max_steps': '1/2'},
            {'train_runtime': 3.0, 'train_loss': 0.95, 'rewards/GeoIoU/mean': 0.6, 'global_step/max_steps': '2/2'},
            {'global_step': 2, 'log_history': [{'rewards/GeoIoU/mean': 99.0}]}]
    write_jsonl(run_dir / 'logging.jsonl', logs)
    s = summarize(str(run_dir)).to_json()
    assert s['steps'] == 2
    assert s['series']['rewards/GeoIoU/mean'] == [[1, 0.2], [2, 0.6]]
    assert s['reward_means_logged'] == {'GeoIoU': pytest.approx(0.4)}
    # A summary repeating a step already logged adds nothing twice.
    logs.insert(1, {'loss': 0.9, 'rewards/GeoIoU/mean': 0.6, 'global_step/max_steps': '2/2'})
    write_jsonl(run_dir / 'logging.jsonl', logs)
    s = summarize(str(run_dir)).to_json()
    assert s['series']['rewards/GeoIoU/mean'] == [[1, 0.2], [2, 0.6]] and s['steps'] == 2


@pytest.mark.parametrize('steps', [[1], [1, 2], list(range(1, 16))])
def test_short_runs_are_plotted_on_whole_steps(steps):
    """Issue 26 item 9: a 1-step run was one point on an axis from 0.945 to 1.05."""
    from swift_ext.cli.review.plots import _pyplot, _series
    plt = _pyplot()
    fig, ax = plt.subplots()
    _series(ax, [(s, 0.5 + s / 100) for s in steps], 'rewards/GeoIoU/mean')
    fig.canvas.draw()
    assert list(ax.get_xticks()) == steps
    assert ax.get_xlim() == (steps[0] - 0.5, steps[-1] + 0.5)
    [line] = ax.get_lines()
    assert line.get_marker() == 'o' and list(line.get_xdata()) == steps
    plt.close(fig)


def test_long_runs_have_integer_step_ticks():
    from swift_ext.cli.review.plots import _pyplot, _series
    plt = _pyplot()
    fig, ax = plt.subplots()
    _series(ax, [(s, 0.5) for s in range(1, 500)], 'loss')
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)


def two_image_run(tmp_path, table_extra):
    """One GRPO row with two images (640x480, then 300x500) whose box lies on the second."""
    records = []
    for index, (w, h) in enumerate([(640, 480), (300, 500)]):
        rec = geo_line(w, h, step=1, rank=0, mode='rollout')
        rec['image_index'] = index
        records.append(rec)
    write_jsonl(tmp_path / 'image_geometry.jsonl', records)
    write_jsonl(tmp_path / 'logging.jsonl', [{'rewards/GeoIoU/mean': 1.0, 'global_step/max_steps': '1/1'}])
    box = [60, 125, 180, 375]  # in the 300x500 image
    geo, _ = SETTINGS.predict(width=300, height=500)
    answer = json.dumps([{'bbox_2d': geo.to_model_frame(box, 'abs')}])
    table = {'step': ['1'], 'prompt': ['p'], 'completion': [answer], 'GeoIoU': [1.0], 'solution': [box],
             'geo_original_size': ['640x480;300x500'], **table_extra}
    write_jsonl(tmp_path / 'completions.jsonl', [table])
    (tmp_path / 'args.json').write_text(json.dumps({'template': 'qwen2_5_vl_geo'}))
    return tmp_path


@pytest.mark.parametrize('how', ['column', 'images', 'order'])
def test_the_gallery_draws_a_box_on_the_image_its_row_names(tmp_path, how):
    """Issue 26 item 4: a 2-image row's box belongs to the image its image_index names (swift_ext.truth),
    found by geo_log's columns, an images column or the step's encode order; the page says which."""
    extra = {'column': {'geo_image': ['/img/640x480.png;/img/300x500.png'], 'geo_image_index': [1]},
             'images': {'images': [['/img/640x480.png', '/img/300x500.png']], 'image_index': [1]},
             'order': {'geo_image_index': [1]}}[how]
    s = summarize(str(two_image_run(tmp_path, extra)), gallery=4).to_json()
    [card] = s['gallery']
    assert card['image'] == '/img/300x500.png' and card['original'] == '300x500'
    assert card['iou'] == pytest.approx(1.0, abs=1e-6)
    words = {'column': "by the row's geo_image column", 'images': "by the row's images column",
             'order': "by the order of its step's rollout encodes"}[how]
    assert any(words in n for n in s['gallery_embedded']['notes']), s['gallery_embedded']['notes']


def test_how_rows_were_matched_is_said_in_words(run_dir, tmp_path):
    """Issue 26 (expected): "Rows joined by column 8" said nothing to a reader."""
    from swift_ext.cli.review.report import format_text, report_html
    s = summarize(str(run_dir))
    text, page = format_text(s), report_html(s, [])
    for shown in (text, page):
        assert 'joined by column' not in shown
        assert '8 row(s) got the tokens of their own images (the geo_visual_tokens column geo_log writes)' in shown
