"""`swift-ext plan` on hostile datasets: every bad row is reported with its row number, nothing crashes,
hangs or misleads; the questions users bring (costliest rows, max tokens per sample, pitfalls) are answered."""
import base64
import io
import json
import os
import signal

import pytest
from PIL import Image

from swift_ext.cli import dataset, plan
from swift_ext.cli.plan import command, report, run, work
from swift_ext.settings import default_settings


def _png(size, color=(10, 200, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new('RGB', size, color).save(buf, format='PNG')
    return buf.getvalue()


def _msg(image):
    return {'messages': [{'role': 'user', 'content': '<image>where?'}], 'images': [image]}


# name -> (row (a dict, or raw text for the line), the message its failure must hold, or None when it plans).
# Built inside the fixture: images are written there; '{dir}' stands for the dataset's folder.
def _cases(root):
    good = str(root / 'good.png')
    truncated = str(root / 'truncated.png')
    return {
        'chat_template_kwargs a string': ({**_msg(good), 'chat_template_kwargs': '{"max_pixels": 3}'},
                                          '`chat_template_kwargs` must be a JSON object, got str'),
        'chat_template_kwargs a list': ({**_msg(good), 'chat_template_kwargs': [1, 2]},
                                        '`chat_template_kwargs` must be a JSON object, got list'),
        'max_pixels a string': ({**_msg(good), 'chat_template_kwargs': {'max_pixels': '1000'}},
                                '`max_pixels` must be a number'),
        'max_pixels a list': ({**_msg(good), 'chat_template_kwargs': {'max_pixels': [1]}},
                              '`max_pixels` must be a number'),
        'bytes an int': (_msg({'bytes': 5}), 'an image must be'),
        'malformed data URL': (_msg('data:image/png;base64' + 'Q' * 40), 'data URL must look like'),
        'images an int': ({'messages': [], 'images': 7}, 'an image must be'),
        'image None in a list': ({'messages': [], 'images': [None]}, 'an image must be'),
        'row a list': ('[1, 2, 3]', 'a row must be a JSON object, got list'),
        'row a string': ('"text"', 'a row must be a JSON object, got str'),
        'not JSON': ('{"messages": [', 'unreadable row'),
        'nested 100000 deep': ('[' * 100000 + ']' * 100000, 'unreadable row'),
        'huge integer limit': ({**_msg(good), 'chat_template_kwargs': {'max_pixels': 10 ** 400}}, None),
        'NaN limit': (f'{{"messages": [], "images": ["{good}"], "chat_template_kwargs": {{"max_pixels": NaN}}}}',
                      None),
        'missing file': (_msg(str(root / 'nope.png')), 'does not exist'),
        'a FIFO as image': (_msg(str(root / 'fifo.png')), 'not a regular file (a FIFO)'),
        'a directory as image': (_msg(str(root)), 'not a regular file (a directory)'),
        'truncated file (found with --verify)': (_msg(truncated), 'not a readable image'),
        'base64 row': (_msg(base64.b64encode(_png((64, 48))).decode()), None),
        'data URL row': (_msg('data:image/png;base64,' + base64.b64encode(_png((64, 48))).decode()), None),
        'dict with base64 in path': (_msg({'bytes': None, 'path': base64.b64encode(_png((64, 48))).decode()}),
                                     None),
    }


@pytest.fixture()
def hostile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new('RGB', (640, 480)).save(tmp_path / 'good.png')
    data = io.BytesIO()
    Image.frombytes('RGB', (300, 300), os.urandom(300 * 300 * 3)).save(data, format='PNG')
    (tmp_path / 'truncated.png').write_bytes(data.getvalue()[:20000])
    os.mkfifo(tmp_path / 'fifo.png')
    cases = _cases(tmp_path)
    lines = [row if isinstance(row, str) else json.dumps(row) for row, _ in cases.values()]
    path = tmp_path / 'hostile.jsonl'
    path.write_text('\n'.join(lines) + '\n')
    numbers = {name: i for i, name in enumerate(cases, 1)}
    return str(path), cases, numbers


@pytest.mark.parametrize('workers', [1, 2])
def test_every_bad_row_is_named_and_good_rows_plan(hostile, workers):
    path, cases, numbers = hostile
    stats = run.plan_dataset(path, work.plan_settings('qwen2_5_vl_geo'), sweep=[200704], workers=workers,
                              verify=True)
    by_row = {}
    for row, _, _, message in stats.failures:
        by_row.setdefault(row, []).append(message)
    for name, (_, message) in cases.items():
        row = numbers[name]
        if message is None:
            assert row not in by_row, (name, by_row.get(row))
        else:
            assert any(message in m for m in by_row.get(row, [])), (name, by_row.get(row))
    assert stats.rows == len(cases)


def test_without_verify_a_truncated_file_plans_from_its_header(hostile):
    path, _, numbers = hostile
    stats = run.plan_dataset(path, work.plan_settings('qwen2_5_vl_geo'), sweep=[], workers=1)
    assert numbers['truncated file (found with --verify)'] not in {r for r, _, _, _ in stats.failures}


def test_in_memory_images_equal_their_file(hostile, tmp_path):
    path, _, _ = hostile
    settings = work.plan_settings('qwen2_5_vl_geo')
    stats = run.plan_dataset(path, settings, sweep=[], workers=1)
    one = settings.predict(width=64, height=48)[0].num_tokens
    assert stats.tokens_per_image[one] == 3  # base64, data URL and dict-with-base64 rows
    # The three in-memory images are one picture; good.png (two rows) and truncated.png the others.
    assert len(stats.unique) == 3


def _die(chunk):
    os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does


def test_a_killed_worker_is_an_error_not_a_hang(hostile, monkeypatch, capsys):
    path, _, _ = hostile
    monkeypatch.setattr(run, 'plan_chunk', _die)  # the forked workers run this instead
    with pytest.raises(run.PlanAborted, match='a worker process died while planning rows 1-'):
        run.plan_dataset(path, work.plan_settings('qwen2_5_vl_geo'), sweep=[], workers=2)
    assert plan.main([path, '--template', 'qwen2_5_vl_geo', '--workers', '2']) == command.EXIT_INCOMPLETE
    err = capsys.readouterr().err
    assert 'the plan is incomplete' in err and 'Traceback' not in err


def test_cli_never_prints_a_traceback(hostile, tmp_path, capsys):
    path, _, _ = hostile
    assert plan.main([path, '--template', 'qwen2_5_vl_geo', '--workers', '1', '--verify']) == 0
    assert 'Traceback' not in capsys.readouterr().err
    assert plan.main([path, '--template', 'qwen2_5_vl_geo', '--workers', '1', '--json']) == 0
    out = json.loads(capsys.readouterr().out)
    assert out['failing_rows'] == sum(1 for _, m in _cases(tmp_path).values() if m) - 1  # truncated: header reads
    os.mkfifo(tmp_path / 'fifo.jsonl')
    (tmp_path / 'list.json').write_text('{"not": "a list"}')
    (tmp_path / 'deep.json').write_text('[' * 100000 + ']' * 100000)
    for bad in (str(tmp_path / 'fifo.jsonl'), str(tmp_path), str(tmp_path / 'list.json'),
                str(tmp_path / 'deep.json'), '/dev/zero'):
        assert plan.main([bad, '--template', 'qwen2_5_vl_geo', '--workers', '1']) == 2, bad
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    for bad_flag in (['--workers', '0'], ['--sweep', '1,-2'], ['--max_pixels', 'x']):
        with pytest.raises(SystemExit):
            plan.main([path, '--template', 'qwen2_5_vl_geo', *bad_flag])


def test_an_over_long_line_is_skipped_and_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dataset, 'MAX_LINE_CHARS', 1000)
    Image.new('RGB', (64, 64)).save(tmp_path / 'a.png')
    rows = [json.dumps(_msg('a.png')), json.dumps({**_msg('a.png'), 'pad': 'x' * 5000}), json.dumps(_msg('a.png'))]
    (tmp_path / 'd.jsonl').write_text('\n'.join(rows) + '\n')
    stats = run.plan_dataset(str(tmp_path / 'd.jsonl'), work.plan_settings('qwen2_5_vl_geo'), sweep=[], workers=1)
    assert [(r, m[:40]) for r, _, _, m in stats.failures] == [(2, 'unreadable row: line is longer than 1000')]
    assert sum(stats.tokens_per_sample.values()) == 2


# --- what users ask -----------------------------------------------------------------------------------
@pytest.fixture()
def realistic(tmp_path, monkeypatch):
    """Rows: big and small images (two rows share one), a remote-only row, an EXIF-rotated photo,
    solutions in pixels and in 0-1000 units, and relative paths that ms-swift resolves elsewhere."""
    work, data = tmp_path / 'work', tmp_path / 'data'
    work.mkdir()
    data.mkdir()
    monkeypatch.chdir(work)
    Image.new('RGB', (1920, 1080)).save(work / 'big.png')
    Image.new('RGB', (320, 240)).save(work / 'small.png')
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new('RGB', (400, 300)).save(work / 'rotated.jpg', exif=exif.tobytes())
    Image.new('RGB', (800, 800)).save(work / 'same_name.png')   # ms-swift reads this one (cwd)
    Image.new('RGB', (90, 90)).save(data / 'same_name.png')     # not this one, next to the dataset
    Image.new('RGB', (90, 90)).save(data / 'only_here.png')     # ms-swift finds nothing
    rows = [
        {**_msg('big.png'), 'solution': [100, 100, 500, 500]},           # 1
        {**_msg('small.png'), 'solution': [10, 10, 900, 900]},           # 2: 0-1000 units on 320x240
        {**_msg('small.png'), 'solution': '[[1, 1, 20, 20]]'},           # 3
        _msg('https://example.com/remote.png'),                          # 4: remote only
        {'messages': [], 'images': ['big.png', 'big.png']},              # 5: the costliest sample
        _msg('rotated.jpg'),                                             # 6
        _msg('same_name.png'),                                           # 7
        _msg('only_here.png'),                                           # 8
    ]
    path = data / 'train.jsonl'
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return str(path)


def test_answers(realistic):
    settings = work.plan_settings('qwen2_5_vl_geo')
    stats = run.plan_dataset(realistic, settings, sweep=[200704, 12845056], workers=1)
    s = report.summary(stats, settings)
    big = settings.predict(width=1920, height=1080)[0].num_tokens
    assert s['most_expensive_rows'][0] == {'row': 5, 'visual_tokens': 2 * big}
    assert s['visual_tokens_per_sample']['max'] == 2 * big
    # Remote-only rows are unchecked, not 0-token samples.
    assert s['samples_unchecked_remote'] == 1 and 0 not in stats.tokens_per_sample
    assert s['remote_images_not_checked'] == 1
    # Unique images versus samples.
    assert s['images'] == 9 and s['unique_images'] == 4  # planned ones: not the remote or the failing image
    # Max tokens per sample under each sweep value.
    swept = {row['pixels']: row['max_visual_tokens_per_sample'] for row in s['sweep']}
    capped = work.sweep_settings(settings, 200704).predict(width=1920, height=1080)[0].num_tokens
    assert swept == {200704: 2 * capped, 12845056: 2 * big}
    assert [e['row'] for e in s['exif_rotated']] == [6]
    assert [(x['row'], x['looks_like_0_1000']) for x in s['solution_outside_image']] == [(2, True)]
    assert [w['row'] for w in s['path_warnings']] == [7]
    assert [(f['row'], 'exists next to the dataset' in f['error']) for f in s['failures']] == [(8, True)]
    text = report.format_text(s)
    for phrase in ('most expensive rows: row 5', 'EXIF orientation', 'row 2: box', 'looks like 0-1000 units',
                   'row 7 image 0', 'row 8 image 0', 'max/sample', '9 images (4 unique)'):
        assert phrase in text, phrase
    assert 'e+' not in json.dumps(s) and 'e+' not in text  # no scientific notation


def test_tile_sweep_for_tiling_families(realistic, capsys):
    settings = work.plan_settings('internvl3_5_geo')
    stats = run.plan_dataset(realistic, settings, sweep=[], tile_sweep=[1, 6, 12], workers=1)
    s = report.summary(stats, settings)
    per = {row['max_num']: row['max_visual_tokens_per_sample'] for row in s['tile_sweep']}
    import dataclasses
    samples = [[(1920, 1080)], [(320, 240)], [(320, 240)], [(1920, 1080)] * 2, [(400, 300)], [(800, 800)]]
    for value in (1, 6, 12):
        swept = dataclasses.replace(settings, max_num=value)
        assert per[value] == max(sum(swept.predict(width=w, height=h)[0].num_tokens for w, h in sample)
                                 for sample in samples)
    assert per[1] < per[6] < per[12]
    # The CLI sweeps max_num by default for a tiling family, pixels for Qwen.
    assert plan.main([realistic, '--template', 'internvl3_5_geo', '--workers', '1']) == 0
    assert 'Sweep of max_num' in capsys.readouterr().out
    with pytest.raises(ValueError, match='no tile limit'):
        run.plan_dataset(realistic, work.plan_settings('qwen2_5_vl_geo'), tile_sweep=[2], workers=1)


def test_default_settings_still_plan_the_demo_numbers(realistic):
    # The same arithmetic the template checks itself against: default settings, one image.
    settings = work.plan_settings('qwen2_5_vl_geo', env={})
    assert settings == default_settings('qwen2_5_vl')
