"""`swift-ext check` on hostile inputs: exit 2 with a message naming the input (never 1, never a
traceback), NaN equals NaN, long lines are parsed in linear time, and `--dataset` measures a difference."""
import json
import math
import os

import pytest
from PIL import Image

from swift_ext.cli import check as drift
from swift_ext.runlog import SETTINGS_FILE
from swift_ext.settings import default_settings


def _record(settings, role='trainer', pid=1, **extra):
    return {'role': role, 'rank': 0, 'pid': pid, 'fingerprint': None, 'settings': settings, 'time': 0, **extra}


def _write(path, records):
    path.write_text(''.join((r if isinstance(r, str) else json.dumps(r)) + '\n' for r in records))
    return str(path)


TRAINER = default_settings('qwen2_5_vl').to_dict()
ROLLOUT = default_settings('qwen2_5_vl', max_pixels=200704).to_dict()


# name -> file content (text, or a callable making the path) that holds nothing comparable.
UNREADABLE = {
    'empty file': '',
    'binary garbage': lambda p: (p.write_bytes(os.urandom(5000)), str(p))[1],
    'deep JSON': '[' * 100000 + ']' * 100000,
    'huge integer': '{"settings": {"template": "x"}, "pid": ' + '9' * 5000 + '}',
    'settings a list': json.dumps({'settings': [1, 2]}),
    'role a list, rank a dict, pid huge': json.dumps(_record(TRAINER, role=['a'], pid=10 ** 30, rank={'x': 1})),
    'versions a list, only one side': json.dumps(_record({**TRAINER, 'versions': [1, 2]})),
    'log line with a broken JSON tail': 'INFO swift-ext qwen2_5_vl_geo preprocessing fingerprint abc (role x): {"a": ',
    'log line with no JSON': 'swift-ext qwen2_5_vl_geo preprocessing fingerprint abc: not json',
}


@pytest.mark.parametrize('case', list(UNREADABLE))
def test_unreadable_inputs_exit_2_naming_the_file(tmp_path, capsys, case):
    content = UNREADABLE[case]
    path = tmp_path / 'in.jsonl'
    name = content(path) if callable(content) else _write(path, [content])
    assert drift.main([name]) == 2
    err = capsys.readouterr().err
    assert name in err and 'Traceback' not in err


def test_special_files_and_missing_paths_exit_2(tmp_path, capsys):
    fifo = tmp_path / 'fifo'
    os.mkfifo(fifo)
    (tmp_path / 'run').mkdir()
    os.mkfifo(tmp_path / 'run' / SETTINGS_FILE)  # a run folder whose settings file is a FIFO
    for bad in (str(fifo), '/dev/zero', str(tmp_path / 'none'), str(tmp_path / 'run'), str(tmp_path)):
        assert drift.main([bad]) == 2, bad
    err = capsys.readouterr().err
    assert 'not a regular file' in err and 'Traceback' not in err


def test_malformed_fields_compare_without_crashing(tmp_path, capsys):
    # Valid records on both sides, with fields of the wrong type: compared, reported, exit 1.
    a = _write(tmp_path / 'a.jsonl', [_record({**TRAINER, 'versions': [1, 2]}, role=['x'], pid='12')])
    b = _write(tmp_path / 'b.jsonl', [_record({**ROLLOUT, 'versions': 'v'}, role='rollout', pid=10 ** 40)])
    assert drift.main([a, b]) == 1
    out = capsys.readouterr()
    assert 'max_pixels' in out.out and 'Traceback' not in out.err


def test_identical_nan_settings_do_not_differ(tmp_path, capsys):
    weird = {**TRAINER, 'max_pixels': math.nan, 'extra': [math.nan, {'k': math.nan}]}
    a = _write(tmp_path / 'a.jsonl', [_record(weird)])
    b = _write(tmp_path / 'b.jsonl', [_record(dict(weird), role='rollout')])
    assert drift.main([a, b]) == 0
    assert 'same preprocessing' in capsys.readouterr().out


def test_long_lines_parse_linearly_and_over_long_lines_are_skipped(tmp_path, monkeypatch):
    # A 2 MB line made of fragments of the marker (what made the old regex quadratic), then a real line.
    junk = ('swift-ext ' + 'x' * 50 + ' preprocessing fingerprint ') * 25000
    real = ('INFO swift: swift-ext qwen2_5_vl_geo preprocessing fingerprint 0123abcd (role rollout, rank 0, pid 7): '
            + json.dumps(ROLLOUT))
    path = _write(tmp_path / 'log.txt', [junk, real, 'x' * 3000])
    records = drift.load_fingerprints(path)
    assert [(r['role'], r['pid'], r['template'], r['line']) for r in records] == [('rollout', 7, 'qwen2_5_vl_geo', 2)]
    monkeypatch.setattr(drift, 'MAX_LINE_CHARS', 1000)
    path = _write(tmp_path / 'log2.txt', ['y' * 5000 + real, real])
    assert [r['line'] for r in drift.load_fingerprints(path)] == [2]  # the over-long line is skipped


def test_dataset_impact(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sizes = [(640, 480), (1920, 1080), (4032, 3024), (50, 60)]
    for w, h in sizes:
        Image.new('RGB', (w, h)).save(tmp_path / f'{w}.png')
    rows = [{'images': [f'{w}.png']} for w, _ in sizes] + [{'images': ['http://x/y.png']}, '{bad', {'images': [5]}]
    dataset = _write(tmp_path / 'd.jsonl', rows)
    a = _write(tmp_path / 'a.jsonl', [_record(TRAINER)])
    b = _write(tmp_path / 'b.jsonl', [_record(ROLLOUT, role='rollout')])
    assert drift.main([a, b, '--dataset', dataset, '--json']) == 1
    impact = json.loads(capsys.readouterr().out)['comparisons'][0]['impact']
    sa, sb = drift.settings_from_dict(TRAINER), drift.settings_from_dict(ROLLOUT)
    differ = sum(sa.predict(width=w, height=h)[0] != sb.predict(width=w, height=h)[0] for w, h in sizes)
    assert differ == 3  # the three images above 200704 pixels
    assert impact['resized_differently'] == differ
    assert impact['images'] == 6 and impact['remote_images_not_checked'] == 1
    assert impact['unreadable_images'] == 1 and impact['unreadable_rows'] == 1
    assert impact['visual_tokens'] == [sum(s.predict(width=w, height=h)[0].num_tokens for w, h in sizes)
                                       for s in (sa, sb)]
    assert drift.main([a, b, '--dataset', dataset]) == 1
    assert '3 of 6 images resize differently' in capsys.readouterr().out
    assert drift.main([a, b, '--dataset', str(tmp_path / 'none.jsonl')]) == 2
    assert 'none.jsonl' in capsys.readouterr().err
