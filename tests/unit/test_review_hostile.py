"""`swift-ext review` on run folders no one here wrote: never a traceback, never a write through a symlink.

Each case is named so a failure says which. Bounds in time and memory are measured by
``scripts/review_bounds.py``, not asserted here.
"""
import json
import os

import pytest

from swift_ext.cli import review
from swift_ext.cli.output import OutputError, prepare_out_dir, write_bytes
from swift_ext.cli.review import aggregate, read
from swift_ext.cli.review.summary import summarize
from swift_ext.settings import default_settings

SETTINGS = default_settings('qwen2_5_vl')


def geo(width=640, height=480, **over):
    g, clamped = SETTINGS.predict(width=width, height=height)
    rec = {'step': 1, 'rank': 0, 'mode': 'train', 'image': f'/img/{width}x{height}.png',
           'template': 'qwen2_5_vl_geo', **g.to_dict(), 'clamped': clamped, 'mismatch': None, 'error': None}
    rec.update(over)
    return json.dumps(rec)


DEEP = '[' * 100000 + ']' * 100000
# name -> (file, lines). Every case is valid JSON (or nearly) of a shape review must survive.
HOSTILE = {
    'huge_int_width': ('image_geometry.jsonl', [geo(original_width=10 ** 30)]),
    'int_beyond_float': ('image_geometry.jsonl', [geo(num_tokens=10 ** 400)]),
    'negative_tokens': ('image_geometry.jsonl', [geo(num_tokens=-5)]),
    'mode_is_a_number': ('image_geometry.jsonl', [geo(mode=7)]),
    'many_modes': ('image_geometry.jsonl', [geo(mode=f'm{i}') for i in range(2000)]),
    'deep_nesting_geometry': ('image_geometry.jsonl', ['{"mismatch": ' + '{"a":' * 50000 + '1' + '}' * 50000 + '}']),
    'deep_nesting_logging': ('logging.jsonl', [DEEP]),
    'infinite_step_logging': ('logging.jsonl', ['{"global_step/max_steps": "1e999/2", "loss": 1}',
                                                '{"global_step/max_steps": "Infinity/2", "loss": Infinity}']),
    'step_not_a_string': ('logging.jsonl', ['{"global_step/max_steps": 5, "loss": 1}']),
    'math_text_reward_name': ('logging.jsonl', [json.dumps({'global_step/max_steps': '1/1',
                                                            'rewards/$\\frac{a$/mean': 0.5,
                                                            'vision/$$$\\sqrt$': 1.0})]),
    'infinite_step_completions': ('completions.jsonl', [json.dumps({'step': [float('inf'), 'Infinity', 1e308],
                                                                    'completion': ['a', 'b', 'c'],
                                                                    'GeoIoU': [0.1, 0.2, 0.3]})]),
    'wrong_typed_completion_columns': ('completions.jsonl', [json.dumps({
        'step': ['1', '1'], 'completion': [{'a': 1}, 5], 'GeoIoU': ['x', [1]], 'geo_visual_tokens': 'many',
        'solution': 3, 'geo_original_size': [None, 7]})]),
    'step_is_not_a_list': ('completions.jsonl', ['{"step": "1", "completion": "x"}', '[1, 2]', '"text"']),
    'deep_nesting_completions': ('completions.jsonl', [DEEP]),
    'nan_rewards': ('completions.jsonl', ['{"step": ["1", "1"], "completion": ["a", "b"], "GeoIoU": [NaN, 0.5]}']),
    'huge_token_column': ('completions.jsonl', [json.dumps({'step': ['1'], 'completion': ['a'], 'GeoIoU': [1.0],
                                                            'geo_visual_tokens': [1e300]})]),
    'math_text_completion_column': ('completions.jsonl', [json.dumps({'step': ['1'], 'completion': ['a'],
                                                                      '$\\x$': [1.0]})]),
    'not_json_at_all': ('image_geometry.jsonl', ['\x00\xff garbage', '{"step": 1,']),
}


@pytest.mark.parametrize('case', sorted(HOSTILE))
def test_hostile_lines_give_a_report(case, tmp_path, capsys):
    name, lines = HOSTILE[case]
    (tmp_path / name).write_text('\n'.join(lines) + '\n')
    if name != 'logging.jsonl':
        (tmp_path / 'logging.jsonl').write_text('{"loss": 1.0, "rewards/GeoIoU/mean": 0.5, '
                                                '"global_step/max_steps": "1/1"}\n')
    rc = review.main([str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert 'Traceback' not in captured.out + captured.err
    assert (tmp_path / 'review' / 'report.html').stat().st_size > 0


def test_bad_lines_are_named_by_number(tmp_path):
    (tmp_path / 'image_geometry.jsonl').write_text('\n'.join([geo(), geo(original_width=10 ** 30), geo(),
                                                              'nope', geo()]) + '\n')
    s = summarize(str(tmp_path)).to_json()
    [status] = [f for f in s['files'] if f['file'] == 'image_geometry.jsonl']
    assert (status['bad_lines'], status['bad_line_numbers']) == (2, [2, 4])
    assert s['images'] == 3
    assert 'image_geometry.jsonl: 2 unreadable line(s) skipped (line 2, 4)' in s['problems']


def test_long_line_is_skipped_and_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(read, 'MAX_GEO_LINE', 4096)
    (tmp_path / 'image_geometry.jsonl').write_text(geo() + '\n' + geo(image='x' * 100000) + '\n' + geo() + '\n')
    s = summarize(str(tmp_path)).to_json()
    [status] = [f for f in s['files'] if f['file'] == 'image_geometry.jsonl']
    assert (status['long_lines'], status['long_line_numbers'], s['images']) == (1, [2], 2)


@pytest.mark.parametrize('kind', ['fifo', 'dev_zero', 'folder'])
def test_special_files_are_refused_by_type(kind, tmp_path, capsys):
    path = tmp_path / 'logging.jsonl'
    if kind == 'fifo':
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    elif kind == 'dev_zero':
        os.symlink('/dev/zero', path)  # reading it would never end
    else:
        path.mkdir()
    (tmp_path / 'image_geometry.jsonl').write_text(geo() + '\n')
    assert review.main([str(tmp_path), '--no-plots']) == 0
    out = capsys.readouterr().out
    assert 'logging.jsonl: not a regular file' in out


def test_many_metric_keys_are_capped(tmp_path):
    rec = {'global_step/max_steps': '1/1', **{f'rewards/R{i}/mean': 0.5 for i in range(400)}}
    (tmp_path / 'logging.jsonl').write_text(json.dumps(rec) + '\n')
    s = summarize(str(tmp_path)).to_json()
    assert len(s['series']) == aggregate.MAX_SERIES
    assert any('144 metric key(s) beyond the first 256 ignored' in p for p in s['problems'])


def test_distinct_values_keep_bounded_bins(tmp_path):
    lines = [geo(width=100 + i, height=100 + (i * 7) % 3000) for i in range(6000)]
    (tmp_path / 'image_geometry.jsonl').write_text('\n'.join(lines) + '\n')
    summary = summarize(str(tmp_path))
    s = summary.to_json()
    assert len(summary.images.histograms['original_megapixels']) <= 4096
    assert s['original_width']['min'] == 100 and s['original_width']['max'] == 6099  # exact ends


# --- outputs never follow symlinks ------------------------------------------------------------------------
def _run(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / 'image_geometry.jsonl').write_text(geo() + '\n')
    (tmp_path / 'logging.jsonl').write_text('{"loss": 1.0, "global_step/max_steps": "1/1"}\n')
    return tmp_path


@pytest.mark.parametrize('planted', ['report.html', 'visual_tokens.png', 'megapixels.png'])
def test_planted_symlink_is_refused_not_followed(planted, tmp_path, capsys):
    run = _run(tmp_path / 'run')
    victim = tmp_path / 'victim.sh'
    victim.write_text('original\n')
    (run / 'review').mkdir()
    os.symlink(victim, run / 'review' / planted)
    assert review.main([str(run)]) == 2  # issue 27: an output replaces only a regular file
    assert f"{run / 'review' / planted}: it is a symlink" in capsys.readouterr().err
    assert victim.read_text() == 'original\n'
    assert os.path.islink(run / 'review' / planted)
    assert not [n for n in os.listdir(run / 'review') if n.endswith('.tmp')]


def test_symlinked_default_out_folder_is_refused(tmp_path, capsys):
    run = _run(tmp_path / 'run')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    os.symlink(elsewhere, run / 'review')
    assert review.main([str(run)]) == 2
    assert 'is a symlink' in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []
    # Named explicitly with --out, the user chose where it points: written.
    assert review.main([str(run), '--out', str(run / 'review'), '--no-plots']) == 0
    assert (elsewhere / 'report.html').exists()


def test_write_bytes_leaves_no_temporary_file(tmp_path):
    write_bytes(str(tmp_path / 'a.txt'), b'x')
    write_bytes(str(tmp_path / 'a.txt'), b'y')
    assert sorted(os.listdir(tmp_path)) == ['a.txt'] and (tmp_path / 'a.txt').read_bytes() == b'y'
    (tmp_path / 'd').mkdir()
    with pytest.raises(OutputError, match='a folder is in the way'):
        write_bytes(str(tmp_path / 'd'), b'z')
    (tmp_path / 'f').write_text('')
    with pytest.raises(OutputError, match='not a folder'):
        prepare_out_dir(str(tmp_path / 'f'), named_by_user=True)
