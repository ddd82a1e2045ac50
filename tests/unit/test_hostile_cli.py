"""Hostile inputs, third round (issue 27): `review`, `score` and `show` never destroy, disclose or die.

Every case runs the real dispatcher (``swift-ext COMMAND ...`` in process), is named so a failure
says which, and failed on main before this round. Special files are made here, under a temporary
folder (``os.mknod`` of a /dev/null twin, FIFOs, symlinks we create): never the real /dev.
"""
import json
import os
import stat
import struct
import warnings
import zlib

import pytest
from PIL import Image

from swift_ext.cli import main as cli_main

ESC = '\x1b'
TITLE = ESC + ']0;pwned' + '\x07'  # OSC: retitles the terminal
CLEAR = ESC + '[2J'  # CSI: clears the screen


def run(capsys, *args):
    rc = cli_main(list(args))
    out, err = capsys.readouterr()
    assert 'Traceback' not in out + err
    return rc, out, err


def null_device(path) -> str:
    """A character device like /dev/null (1, 3), made here: what `--html /dev/null` would replace."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return str(path)


def is_null_device(path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


def square(folder, name='img.png', side=448) -> str:
    """A grey square PNG whose Qwen2.5-VL frame is its own pixels (448 = 16 x 28)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    Image.new('RGB', (side, side), (200, 200, 200)).save(path)
    return path


BOXES = ([40, 40, 200, 200], [220, 40, 400, 200], [40, 240, 200, 400], [240, 240, 420, 420])


def answer(box) -> str:
    return json.dumps([{'bbox_2d': box, 'label': 'x'}])


def write_jsonl(path, rows) -> str:
    with open(path, 'w') as f:
        f.writelines((r if isinstance(r, str) else json.dumps(r)) + '\n' for r in rows)
    return str(path)


def result_file(tmp_path, n=3, solution=True, ids=False) -> tuple[str, str]:
    """``(result.jsonl, image)``: row i answers BOXES[i] exactly (IoU 1 against its own truth)."""
    image = square(tmp_path / 'data')
    rows = [{'response': answer(BOXES[i]), 'images': [{'bytes': None, 'path': image}]} for i in range(n)]
    for i, row in enumerate(rows):
        if solution:
            row['solution'] = BOXES[i]
        if ids:
            row['id'] = f'r{i}'
    return write_jsonl(tmp_path / 'result.jsonl', rows), image


# --- 1. outputs never replace a special file; '-' is standard output ------------------------------------------
def _score(tmp_path, target):
    result, _ = result_file(tmp_path)
    return ['score', result, '--template', 'qwen2_5_vl', '--html', target]


def _show(tmp_path, target):
    return ['show', square(tmp_path / 'in'), '--template', 'qwen2_5_vl', '--out', target]


def _review(tmp_path, target):
    return ['review', str(tmp_path / 'run'), '--no-plots']


def _make_run(tmp_path):
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'logging.jsonl').write_text('{"loss": 1.0, "global_step/max_steps": "1/1"}\n')
    (run_dir / 'review').mkdir()
    return run_dir


# name -> (command, how the target is made: 'device' | 'fifo' | 'link_to_stdout' | 'link_to_device')
SPECIAL_TARGETS = {
    'score_html_onto_a_device': (_score, 'null', 'device'),
    'score_html_onto_stdout_link': (_score, 'stdout', 'link_to_stdout'),
    'score_html_onto_a_fifo': (_score, 'pipe.html', 'fifo'),
    'show_out_onto_a_device': (_show, 'null.png', 'device'),
    'show_out_onto_a_link_to_a_device': (_show, 'out.png', 'link_to_device'),
    'review_report_is_a_device': (_review, 'run/review/report.html', 'device'),
}


@pytest.mark.parametrize('case', sorted(SPECIAL_TARGETS))
def test_outputs_refuse_special_targets(case, tmp_path, capsys):
    command, name, kind = SPECIAL_TARGETS[case]
    if command is _review:
        _make_run(tmp_path)
    target = str(tmp_path / name)
    if kind == 'device':
        null_device(target)
    elif kind == 'fifo':
        os.mkfifo(target)
    elif kind == 'link_to_stdout':
        os.symlink('/proc/self/fd/1', target)
    else:
        os.symlink(null_device(tmp_path / 'null'), target)
    rc, out, err = run(capsys, *command(tmp_path, target))
    assert rc == 2, (out, err)
    assert target in err and 'replaces only a regular file' in err
    if kind == 'device':
        assert is_null_device(target)
    elif kind == 'fifo':
        assert stat.S_ISFIFO(os.lstat(target).st_mode)
    else:
        assert os.path.islink(target) and (kind != 'link_to_device' or is_null_device(tmp_path / 'null'))
    assert not [n for n in os.listdir(os.path.dirname(target)) if n.endswith('.tmp')]


def test_score_html_dash_is_standard_output(tmp_path, capsysbinary):
    result, _ = result_file(tmp_path)
    assert cli_main(['score', result, '--template', 'qwen2_5_vl', '--html', '-']) == 0
    out, err = capsysbinary.readouterr()
    assert out.startswith(b'<!doctype html>') and out.rstrip().endswith(b'</html>')
    assert b'mean IoU 1.0000' in err  # the summary moves to stderr
    assert not os.path.exists('-')
    assert cli_main(['score', result, '--template', 'qwen2_5_vl', '--html', '-', '--json']) == 2


def test_show_out_dash_is_standard_output(tmp_path, capsysbinary):
    assert cli_main(_show(tmp_path, '-')) == 0
    out, err = capsysbinary.readouterr()
    assert out.startswith(b'\x89PNG\r\n\x1a\n') and b'visual tokens' in err
    assert not os.path.exists('-')


def test_review_out_dash_is_refused(tmp_path, capsys):
    _make_run(tmp_path)
    rc, _, err = run(capsys, 'review', str(tmp_path / 'run'), '--out', '-')
    assert rc == 2 and "'-'" in err and not os.path.exists('-')


# --- 2. the shareable report embeds only confirmed images ---------------------------------------------------------
def geo_record(image, side=448, step=1):
    return {'step': step, 'rank': 0, 'mode': 'rollout', 'image_index': 0, 'image': image, 'template': 'qwen2_5_vl_geo',
            'original_width': side, 'original_height': side, 'resized_width': side, 'resized_height': side,
            'num_tokens': (side // 28) ** 2, 'grid': [1, side // 14, side // 14], 'clamped': None, 'mismatch': None,
            'error': None}


def disclosure_run(tmp_path, image, *, args=None):
    """A run whose completions row and geometry record both name ``image`` (a file outside the run)."""
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    write_jsonl(run_dir / 'image_geometry.jsonl', [geo_record(image)])
    write_jsonl(run_dir / 'logging.jsonl', [{'global_step/max_steps': '1/1', 'rewards/GeoIoU/mean': 0.5}])
    write_jsonl(run_dir / 'completions.jsonl', [{'step': ['1'], 'completion': [answer(BOXES[0])], 'GeoIoU': [0.5],
                                                 'solution': [BOXES[0]], 'geo_image': [image]}])
    if args is not None:
        (run_dir / 'args.json').write_text(json.dumps(args))
    return run_dir


def dataset_listing(folder, image, name='train.jsonl') -> str:
    return write_jsonl(os.path.join(folder, name), [{'messages': [], 'images': [image], 'solution': BOXES[0]}])


# name -> (where the image lies, args.json, --images-under, embedded?)
DISCLOSURE = {
    'private_file_outside_the_run': ('home', None, None, False),
    'args_json_names_a_dataset_that_lists_it': ('data', 'listing', None, True),
    'args_json_names_a_file_beside_it_that_lists_nothing': ('home', 'beside', None, False),
    'args_json_names_a_missing_dataset': ('home', 'missing', None, False),
    'confirmed_with_images_under': ('home', None, 'home', True),
    'symlink_in_the_run_to_a_private_file': ('run_link', None, None, False),
}


@pytest.mark.parametrize('case', sorted(DISCLOSURE))
def test_report_embeds_only_confirmed_images(case, tmp_path, capsys):
    where, args_kind, under, embedded = DISCLOSURE[case]
    private = square(tmp_path / ('data' if where == 'data' else 'home'), 'passport_scan.png')
    image = private
    args = None
    if args_kind == 'listing':
        args = {'dataset': [dataset_listing(tmp_path / 'data', private)]}
    elif args_kind == 'beside':
        args = {'dataset': [write_jsonl(tmp_path / 'home' / 'notes.jsonl', [{'text': 'hello'}])]}
    elif args_kind == 'missing':
        args = {'dataset': [str(tmp_path / 'home' / 'gone.jsonl')]}
    if where == 'run_link':
        (tmp_path / 'run').mkdir()
        image = str(tmp_path / 'run' / 'looks_local.png')
        os.symlink(private, image)
        run_dir = tmp_path / 'run'
        for name, rows in (('image_geometry.jsonl', [geo_record(image)]),
                           ('logging.jsonl', [{'global_step/max_steps': '1/1', 'rewards/GeoIoU/mean': 0.5}]),
                           ('completions.jsonl', [{'step': ['1'], 'completion': ['x'], 'GeoIoU': [0.5],
                                                   'solution': [BOXES[0]], 'geo_image': [image]}])):
            write_jsonl(run_dir / name, rows)
    else:
        run_dir = disclosure_run(tmp_path, image, args=args)
    extra = ['--images-under', str(tmp_path / under)] if under else []
    rc, out, err = run(capsys, 'review', str(run_dir), '--no-plots', '--json', *extra)
    assert rc == 0, err
    page = (run_dir / 'review' / 'report.html').read_text()
    assert ('data:image/jpeg;base64,' in page) == embedded
    summary = json.loads(out)
    [card] = summary['gallery']
    if not embedded:
        assert summary['gallery_embedded']['withheld'] == 1
        assert any('not embedded' in n for n in card['notes']) or 'not embedded' in page
        assert 'is not under a confirmed folder' in page and 'Image files are embedded only from' in page


def test_error_text_never_quotes_the_file(tmp_path, capsys):
    """A confirmed file that starts like a PPM but is not one: the card says unreadable, not its bytes."""
    secret = tmp_path / 'home' / 'notes.ppm'
    secret.parent.mkdir()
    secret.write_bytes(b'P6\nSECRET-TOKEN-1234 hunter2\n255\n' + b'\x00' * 64)
    run_dir = disclosure_run(tmp_path, str(secret))
    rc, _, err = run(capsys, 'review', str(run_dir), '--no-plots', '--images-under', str(tmp_path / 'home'))
    assert rc == 0, err
    page = (run_dir / 'review' / 'report.html').read_text()
    assert 'image unreadable' in page and 'SECRET' not in page and 'hunter2' not in page


# --- 3, 4, 5. values that once killed review or score -------------------------------------------------------------
def review_run(tmp_path, *, logging=None, completions=None, geometry=None):
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    write_jsonl(run_dir / 'logging.jsonl', logging or [{'global_step/max_steps': '1/1', 'loss': 1.0}])
    if completions is not None:
        write_jsonl(run_dir / 'completions.jsonl', completions)
    if geometry is not None:
        write_jsonl(run_dir / 'image_geometry.jsonl', geometry)
    return run_dir


def _log(*values):
    return [{'global_step/max_steps': f'{i + 1}/{len(values)}', 'rewards/R/mean': v, 'loss': 1.0}
            for i, v in enumerate(values)]


# name -> (review_run keyword arguments, text the terminal summary must hold)
REVIEW_VALUES = {
    'finite_huge_reward_1e308': ({'logging': _log(1e308, -1e308, 0.5)}, '2 value(s) infinite or beyond'),
    'finite_huge_reward_1e308_twice': ({'logging': _log(1e308, 1e308)}, 'rewards/R/mean: 2 value(s)'),
    'integer_beyond_float_reward': ({'logging': ['{"global_step/max_steps": "1/1", "rewards/R/mean": 1' + '0' * 400
                                                 + '}']}, 'rewards/R/mean: 1 value(s)'),
    'finite_huge_completion_reward': ({'completions': [{'step': ['1', '1'], 'completion': ['a', 'b'],
                                                        'R': [1e308, 1e308]}]}, 'R: 2 value(s) infinite'),
    'lone_surrogate_completion': ({'completions': [{'step': ['1'], 'completion': ['bad \ud800 text'],
                                                    'GeoIoU': [0.5]}]}, 'Reward means'),
    'lone_surrogate_image_path': ({'geometry': [{**geo_record('/img/\udcff.png'), 'error': 'gone \ud800'}],
                                   'completions': [{'step': ['1'], 'completion': ['x'], 'GeoIoU': [0.5],
                                                    'geo_image': ['/img/\udcff.png']}]},
                                  'image_geometry.jsonl: 1 unreadable line(s)'),  # msgspec refuses it: counted
    'lone_surrogate_reward_name': ({'logging': [{'global_step/max_steps': '1/1', 'rewards/R\ud800/mean': 0.5}]},
                                   'R\\ud800 0.5'),
    'integer_beyond_float_solution': ({'completions': [{'step': ['1'], 'completion': [answer(BOXES[0])],
                                                        'GeoIoU': [0.5], 'solution': [[1, 2, 3, 10 ** 400]]}]},
                                      'Gallery: 1 rollout(s)'),
}


@pytest.mark.parametrize('case', sorted(REVIEW_VALUES))
def test_review_survives_hostile_values(case, tmp_path, capsys):
    kwargs, expected = REVIEW_VALUES[case]
    run_dir = review_run(tmp_path, **kwargs)
    rc, out, err = run(capsys, 'review', str(run_dir))  # with plots: matplotlib sees every value
    assert rc == 0, err
    assert expected in out
    page = (run_dir / 'review' / 'report.html').read_bytes()
    page.decode('utf-8')  # valid UTF-8: a lone surrogate is shown as an escape
    rc, out, _ = run(capsys, 'review', str(run_dir), '--json', '--out', str(tmp_path / 'again'))
    assert rc == 0 and json.loads(out)


# name -> (how the result row or the dataset carries the hostile value, rows scored)
SCORE_VALUES = {
    'lone_surrogate_response': ('response', 1),
    'lone_surrogate_image_path': ('image', 0),
    'integer_beyond_float_solution': ('solution', 0),
    'integer_beyond_float_solution_as_text': ('solution_text', 0),
    'integer_beyond_float_objects': ('objects', 0),
    'integer_beyond_float_solution_via_dataset': ('dataset', 0),
}


@pytest.mark.parametrize('case', sorted(SCORE_VALUES))
def test_score_survives_hostile_values(case, tmp_path, capsys):
    where, scored = SCORE_VALUES[case]
    image = square(tmp_path / 'data')
    row = {'response': answer(BOXES[0]), 'images': [image], 'solution': BOXES[0]}
    huge = [1, 2, 3, 10 ** 400]
    extra = []
    if where == 'response':
        row['response'] = 'x \ud800 ' + answer(BOXES[0])
    elif where == 'image':
        row['images'] = [image + '\udcff']
    elif where == 'solution':
        row['solution'] = huge
    elif where == 'solution_text':
        row['solution'] = json.dumps(huge)
    elif where == 'objects':
        del row['solution']
        row['objects'] = {'ref': ['x'], 'bbox': [huge], 'bbox_type': 'real'}
    else:
        del row['solution']
        extra = ['--dataset', write_jsonl(tmp_path / 'data' / 'val.jsonl', [{'solution': huge}])]
    result = write_jsonl(tmp_path / 'result.jsonl', [row])
    rc, out, err = run(capsys, 'score', result, '--template', 'qwen2_5_vl', '--json', '--html',
                       str(tmp_path / 'page.html'), *extra)
    assert rc == 0, err
    r = json.loads(out)
    assert (r['rows'], r['scored'], r['not_scored']) == (1, scored, 1 - scored)
    (tmp_path / 'page.html').read_bytes().decode('utf-8')


# --- 7. usage errors and bounded decodes ----------------------------------------------------------------------------
@pytest.mark.parametrize('value', ['inf', '1e308', 'nan', '-1', '0', 'lots'])
@pytest.mark.parametrize('command', ['review', 'score'])
def test_gallery_max_mb_is_a_usage_error(command, value, tmp_path, capsys):
    if command == 'review':
        args = ['review', str(review_run(tmp_path, completions=[{'step': ['1'], 'completion': ['a'], 'R': [1]}]))]
    else:
        args = ['score', result_file(tmp_path)[0], '--template', 'qwen2_5_vl', '--html', str(tmp_path / 'p.html')]
    with pytest.raises(SystemExit) as exc:
        cli_main(args + ['--gallery-max-mb', value])
    assert exc.value.code == 2
    assert '--gallery-max-mb' in capsys.readouterr().err


def big_png(path, width, height) -> str:
    """A valid grey PNG of ``width`` x ``height`` zeros, written a row at a time (never held whole)."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    comp, row, parts = zlib.compressobj(9), b'\x00' * (width + 1), []
    for _ in range(height):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)))
        f.write(chunk(b'IDAT', b''.join(parts)) + chunk(b'IEND', b''))
    return str(path)


# name -> (width, height, template): each decodes to more pixels than show draws from
SHOW_BOMBS = {
    'png_13000_square': (13000, 13000, 'qwen2_5_vl'),
    'png_89478485_by_2_internvl_hf': (89478485, 2, 'internvl_hf'),
}


@pytest.mark.parametrize('case', sorted(SHOW_BOMBS))
def test_show_draws_from_a_bounded_decode(case, tmp_path, capsys):
    width, height, template = SHOW_BOMBS[case]
    path = big_png(tmp_path / 'big.png', width, height)  # black: a decoded image would be drawn black
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        rc, out, err = run(capsys, 'show', path, '--template', template, '--out', str(tmp_path / 'shown.png'))
    assert rc == 0, err
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert f'geometry only: pixels not drawn, the file is {width} x {height}' in out
    from swift_ext.cli.show import picture
    from swift_ext.cli.show.command import load_image
    assert load_image(path, (width, height), (100, 100))[0] is None  # never decoded
    shown = Image.open(tmp_path / 'shown.png').convert('RGB')
    colours = {c for _, c in shown.getcolors(1 << 24)}
    assert picture.PLACEHOLDER in colours and (0, 0, 0) not in colours


# --- 8. score --dataset joins rows soundly --------------------------------------------------------------------------
def dataset_file(tmp_path, rows) -> str:
    return write_jsonl(tmp_path / 'data' / 'val.jsonl', rows)


# name -> (dataset rows (BOXES index, or a raw line), result rows carry ids, exit status, mean IoU or message)
JOINS = {
    'dataset_line_over_64_mb': ([{'solution': BOXES[0], 'pad': 'x' * (65 << 20)}, 1, 2], False, 0, 1.0),
    'dataset_longer_than_results': ([0, 1, 2, 3], False, 2, 'more rows than the 3'),
    'dataset_shorter_than_results': ([0, 1], False, 2, 'has 2 rows and the result file more'),
    'dataset_line_not_json': ([0, '{"solution": [1, 2', 2], False, 2, 'line 2 could not be read'),
    'joined_by_id_in_another_order': ([{'id': 'r2', 'solution': BOXES[2]}, {'id': 'r0', 'solution': BOXES[0]},
                                       {'id': 'r1', 'solution': BOXES[1]}], True, 0, 1.0),
    'id_repeated_in_dataset': ([{'id': 'r0', 'solution': BOXES[0]}, {'id': 'r0', 'solution': BOXES[1]}], True, 2,
                               'repeats `id`'),
}


@pytest.mark.parametrize('case', sorted(JOINS))
def test_score_dataset_join(case, tmp_path, capsys):
    rows, ids, status, expected = JOINS[case]
    result, _ = result_file(tmp_path, solution=False, ids=ids)
    data = dataset_file(tmp_path, [{'solution': BOXES[r]} if isinstance(r, int) else r for r in rows])
    rc, out, err = run(capsys, 'score', result, '--template', 'qwen2_5_vl', '--dataset', data, '--json')
    assert rc == status, err
    if status == 0:
        r = json.loads(out)
        assert (r['scored'], r['mean_iou']) == (3, pytest.approx(expected))
    else:
        assert expected in err and out == ''


def test_a_dataset_line_too_long_to_read_is_refused(tmp_path, capsys, monkeypatch):
    from swift_ext.cli import dataset
    monkeypatch.setattr(dataset, 'MAX_LINE_CHARS', 1000)
    result, _ = result_file(tmp_path, solution=False)
    data = dataset_file(tmp_path, [{'solution': BOXES[0], 'pad': 'x' * 2000}, {'solution': BOXES[1]},
                                   {'solution': BOXES[2]}])
    rc, out, err = run(capsys, 'score', result, '--template', 'qwen2_5_vl', '--dataset', data)
    assert rc == 2 and 'line 1 could not be read' in err and out == ''


# --- 9. control characters never reach the terminal ---------------------------------------------------------------
def _review_names(tmp_path):
    run_dir = review_run(tmp_path, logging=[{'global_step/max_steps': '1/1', f'rewards/R{TITLE}{CLEAR}/mean': 0.5}],
                         geometry=[{**geo_record(f'/img/{CLEAR}.png'), 'error': f'gone {TITLE}'}])
    return ['review', str(run_dir), '--no-plots']


def _score_path(tmp_path):
    result = write_jsonl(tmp_path / 'r.jsonl', [{'response': 'x', 'images': [f'/img/{TITLE}.png'],
                                                 'solution': BOXES[0]}])
    return ['score', result, '--template', 'qwen2_5_vl']


def _plan_path(tmp_path):
    data = write_jsonl(tmp_path / 'd.jsonl', [{'messages': [], 'images': [f'/img/{CLEAR}{TITLE}.png']}])
    return ['plan', data, '--template', 'qwen2_5_vl_geo', '--workers', '1', '--sweep', '200704']


def _check_template(tmp_path):
    from swift_ext.settings import default_settings
    settings = default_settings('qwen2_5_vl_geo').to_dict()
    lines = [{'role': 'trainer', 'fingerprint': 'a' * 12, 'settings': {**settings, 'template': f'q{TITLE}'}},
             {'role': 'rollout', 'fingerprint': 'b' * 12,
              'settings': {**settings, 'template': f'q{CLEAR}', 'max_pixels': 50176}}]
    return ['check', write_jsonl(tmp_path / 'geometry_settings.jsonl', lines)]


def _show_path(tmp_path):
    return ['show', square(tmp_path, f'a{CLEAR}.png'), '--template', 'qwen2_5_vl']


def _usage_error(tmp_path):
    return ['review', str(tmp_path), f'--bogus{CLEAR}']  # argparse quotes unrecognized arguments as they are


TERMINAL = {
    'review_reward_name_and_image_path': _review_names,
    'score_image_path': _score_path,
    'plan_image_path': _plan_path,
    'check_template_names': _check_template,
    'show_image_path': _show_path,
    'argparse_error_quoting_an_argument': _usage_error,
}


@pytest.mark.parametrize('case', sorted(TERMINAL))
def test_control_characters_are_escaped(case, tmp_path, capsys):
    try:
        cli_main(TERMINAL[case](tmp_path))
    except SystemExit:  # argparse's usage error
        pass
    out, err = capsys.readouterr()
    assert ESC not in out + err and '\x07' not in out + err
    assert '\\x1b' in out + err  # shown as an escape, not dropped


def test_no_command_prints_but_through_echo():
    """Every line a command prints goes through ``text.echo`` (``visible``): no module calls print()."""
    import ast
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[2] / 'swift_ext' / 'cli'
    offenders = []
    for path in root.rglob('*.py'):
        if path.name == 'text.py' or 'bench' in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'print':
                offenders.append(f'{path.relative_to(root)}:{node.lineno}')
    assert offenders == []


def test_log_lines_and_library_warnings_are_escaped():
    """The dispatcher logs (and routes library warnings) through ``text.Formatter``."""
    import logging

    from swift_ext.cli.text import Formatter
    record = logging.LogRecord('swift_ext', logging.WARNING, __file__, 1, 'image %s is gone', (f'/img/{CLEAR}',), None)
    line = Formatter('%(levelname)s %(message)s').format(record)
    assert line == 'WARNING image /img/\\x1b[2J is gone'
