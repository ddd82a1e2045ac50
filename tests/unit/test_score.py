"""`swift-ext score` on constructed `swift infer` result files whose metrics are known exactly.

Responses are built from the ground truth in each family's own convention (Qwen2.5-VL: pixels
of the resized image; Qwen3-VL and InternVL: 0-1000 of the frame), so every metric must be
exactly 1.0; boxes shifted by a known amount give a known IoU.
"""
import json
import os

import pytest

from swift_ext.cli import score
from swift_ext.cli.score.aggregate import score_file
from swift_ext.settings import default_settings, settings_for

SIZES = [(640, 480), (1280, 960), (300, 500), (50, 60)]


def gt_box(width, height):
    return [width // 5, height // 4, (3 * width) // 5, (3 * height) // 4]


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    from PIL import Image
    root = tmp_path_factory.mktemp('score_images')
    paths = {}
    for w, h in SIZES:
        path = root / f'{w}x{h}.png'
        Image.new('RGB', (w, h), (200, 200, 200)).save(path)
        paths[(w, h)] = str(path)
    return paths


def response_for(template, box, width, height, row_kwargs=None, shift=0.0):
    """The answer a perfect model of ``template`` writes for ``box``, optionally shifted right."""
    settings = default_settings(template)
    g, _ = settings.predict(width=width, height=height, row_kwargs=row_kwargs)
    x1, y1, x2, y2 = g.to_model_frame([box[0] + shift, box[1], box[2] + shift, box[3]], settings.coords)
    if settings.coords == 'abs':
        return json.dumps([{'bbox_2d': [x1, y1, x2, y2], 'label': 'red box'}])
    if template.startswith('internvl'):
        return f'<ref>red box</ref><box>[[{x1}, {y1}, {x2}, {y2}]]</box>'
    return json.dumps([{'bbox_2d': [x1, y1, x2, y2], 'label': 'red box'}])


def write_result(path, rows):
    with open(path, 'w') as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + '\n')
    return str(path)


def result_row(template, images, w, h, *, gt='solution', shift=0.0, row_kwargs=None):
    box = gt_box(w, h)
    row = {'response': response_for(template, box, w, h, row_kwargs, shift), 'labels': None, 'logprobs': None,
           'messages': [], 'images': [{'bytes': None, 'path': images[(w, h)]}], 'chat_template_kwargs': row_kwargs}
    if gt == 'solution':
        row['solution'] = box
    elif gt == 'objects':
        row['objects'] = {'ref': ['red box'], 'bbox': [box], 'bbox_type': 'real'}
    else:  # objects in 0-1 of the original image
        row['objects'] = {'ref': ['red box'], 'bbox': [[box[0] / w, box[1] / h, box[2] / w, box[3] / h]],
                          'bbox_type': 'norm1'}
    return row


@pytest.mark.parametrize('template', ['qwen2_5_vl', 'qwen3_vl', 'internvl3_5'])
@pytest.mark.parametrize('gt', ['solution', 'objects', 'objects_norm1'])
def test_perfect_answers_score_exactly_one(template, gt, images, tmp_path):
    rows = [result_row(template, images, w, h, gt=gt) for w, h in SIZES]
    path = write_result(tmp_path / 'result.jsonl', rows)
    settings = settings_for(template + '_geo', env={})
    r = score_file(path, settings, settings.coords)
    assert (r['rows'], r['scored'], r['not_scored'], r['no_box']) == (4, 4, 0, 0)
    assert r['mean_iou'] == pytest.approx(1.0, abs=1e-9)
    assert (r['acc50'], r['acc75']) == (1.0, 1.0)
    assert r['matched'] == pytest.approx(1.0, abs=1e-9)
    assert sum(b['rows'] for b in r['by_visual_tokens'].values()) == 4
    assert sum(b['rows'] for b in r['by_original_size'].values()) == 4


def test_shifted_boxes_have_the_known_iou(images, tmp_path):
    # Each box is shifted right by half its width: overlap 1/2 of a box, union 3/2 -> IoU 1/3.
    rows = []
    for w, h in SIZES[:3]:
        box = gt_box(w, h)
        rows.append(result_row('qwen2_5_vl', images, w, h, shift=(box[2] - box[0]) / 2))
    path = write_result(tmp_path / 'result.jsonl', rows)
    settings = default_settings('qwen2_5_vl')
    r = score_file(path, settings, 'abs')
    assert r['mean_iou'] == pytest.approx(1 / 3, abs=1e-6)
    assert (r['acc50'], r['acc75']) == (0.0, 0.0)


def test_row_max_pixels_is_honoured(images, tmp_path):
    # The response is written in the frame of a row limit: read without it, the IoU would drop.
    kwargs = {'max_pixels': 200704}
    row = result_row('qwen2_5_vl', images, 1280, 960, row_kwargs=kwargs)
    path = write_result(tmp_path / 'result.jsonl', [row])
    r = score_file(path, default_settings('qwen2_5_vl'), 'abs')
    assert r['mean_iou'] == pytest.approx(1.0, abs=1e-9)
    row['chat_template_kwargs'] = None
    write_result(tmp_path / 'result.jsonl', [row])
    assert score_file(path, default_settings('qwen2_5_vl'), 'abs')['mean_iou'] < 0.5


def test_swift_max_pixels_flag_and_environment(images, tmp_path, capsys, monkeypatch):
    settings = settings_for('qwen2_5_vl_geo', env={}, swift_max_pixels=50176)
    g, _ = settings.predict(width=1280, height=960)
    box = gt_box(1280, 960)
    row = {'response': json.dumps([{'bbox_2d': g.to_model_frame(box, 'abs')}]), 'solution': box,
           'images': [images[(1280, 960)]]}
    path = write_result(tmp_path / 'result.jsonl', [row])
    monkeypatch.delenv('MAX_PIXELS', raising=False)
    assert score.main([path, '--template', 'qwen2_5_vl', '--max_pixels', '50176', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['mean_iou'] == pytest.approx(1.0, abs=1e-9)
    assert score.main([path, '--template', 'qwen2_5_vl', '--json']) == 0  # without the flag: another frame
    assert json.loads(capsys.readouterr().out)['mean_iou'] < 0.5


MALFORMED = {
    'not_json': '{"response": ',
    'not_an_object': '[1, 2]',
    'response_not_a_string': {'response': 5, 'solution': [1, 2, 3, 4], 'images': ['x']},
    'no_ground_truth': {'response': 'x', 'images': ['IMG']},
    'bad_solution': {'response': 'x', 'solution': [30, 20, 10, 40], 'images': ['IMG']},
    'no_image': {'response': 'x', 'solution': [1, 2, 3, 4]},
    'missing_image_file': {'response': 'x', 'solution': [1, 2, 3, 4], 'images': ['/nope/none.png']},
    'kwargs_not_a_dict': {'response': 'x', 'solution': [1, 2, 3, 4], 'images': ['IMG'], 'chat_template_kwargs': 3},
    'string_max_pixels': {'response': 'x', 'solution': [1, 2, 3, 4], 'images': ['IMG'],
                          'chat_template_kwargs': {'max_pixels': 'big'}},
    'deep_nesting': '{"response": ' + '[' * 100000 + ']' * 100000 + '}',
}


def test_malformed_rows_are_counted_with_row_numbers(images, tmp_path, capsys):
    good = result_row('qwen2_5_vl', images, 640, 480)
    rows = [good]
    for case in MALFORMED.values():
        rows.append(case if isinstance(case, str) else
                    json.loads(json.dumps(case).replace('IMG', images[(640, 480)])))
    rows.append(good)
    path = write_result(tmp_path / 'result.jsonl', rows)
    assert score.main([path, '--template', 'qwen2_5_vl_geo']) == 0
    out = capsys.readouterr().out
    assert 'Traceback' not in out
    r = score_file(path, default_settings('qwen2_5_vl'), 'abs')
    assert (r['rows'], r['scored'], r['not_scored']) == (len(rows), 2, len(MALFORMED))
    numbers = sorted(n for p in r['problems'] for n in p['row_numbers'])
    assert numbers == list(range(2, 2 + len(MALFORMED)))
    assert any(p['example'] == 'row 4: `response` must be a string, got 5' for p in r['problems']), r['problems']


def test_unusable_inputs_exit_2(tmp_path, capsys):
    assert score.main([str(tmp_path / 'none.jsonl'), '--template', 'qwen2_5_vl']) == 2
    (tmp_path / 'r.jsonl').write_text('')
    assert score.main([str(tmp_path / 'r.jsonl'), '--template', 'no_such_template']) == 2
    err = capsys.readouterr().err
    assert 'none.jsonl: missing' in err and "--template 'no_such_template'" in err


def test_html_gallery(images, tmp_path):
    rows = [result_row('qwen2_5_vl', images, w, h, shift=s) for (w, h), s in zip(SIZES, (0, 30, 60, 5), strict=True)]
    rows[1]['images'] = ['/nope/gone.png']  # not scored: the gallery never sees it
    path = write_result(tmp_path / 'result.jsonl', rows)
    out = tmp_path / 'page' / 'score.html'
    folder = os.path.dirname(images[SIZES[0]])
    assert score.main([path, '--template', 'qwen2_5_vl', '--html', str(out), '--images-under', folder]) == 0
    page = out.read_text()
    assert page.count('data:image/jpeg;base64,') == 3 and 'best IoU' in page and 'worst IoU' in page
    # Image files outside a confirmed folder (here: no --dataset, no --images-under) are named, not embedded.
    assert score.main([path, '--template', 'qwen2_5_vl', '--html', str(out)]) == 0
    page = out.read_text()
    assert 'data:image/jpeg;base64,' not in page and page.count('is not under a confirmed folder') == 3


def test_gallery_compares_the_header_size_not_the_drafted_decode(tmp_path):
    """Issue 26 item 2: a 900x1600 JPEG decodes at 450x800 after Image.draft(); the gallery (score's
    and review's: both draw with cards.draw) must not call that a changed file, and must still name
    a file whose header differs from the log."""
    from PIL import Image

    from swift_ext.cli.cards import Item, draw
    path = tmp_path / 'portrait.jpg'
    Image.new('RGB', (900, 1600), (120, 130, 140)).save(path, quality=90)
    box = gt_box(900, 1600)
    rows = [{'response': response_for('qwen2_5_vl', box, 900, 1600), 'solution': box, 'images': [str(path)]}]
    result = write_result(tmp_path / 'result.jsonl', rows)
    page = tmp_path / 'score.html'
    assert score.main([result, '--template', 'qwen2_5_vl', '--html', str(page), '--images-under', str(tmp_path)]) == 0
    text = page.read_text()
    assert text.count('data:image/jpeg;base64,') == 1 and 'the file is' not in text
    settings = default_settings('qwen2_5_vl')
    same, _ = settings.predict(width=900, height=1600)
    jpeg, why, notes = draw(Item(reasons=['x'], completion='', image_key=str(path), geometry=same, coords='abs'))
    assert jpeg is not None and notes == []
    other, _ = settings.predict(width=1800, height=3200)
    _, _, notes = draw(Item(reasons=['x'], completion='', image_key=str(path), geometry=other, coords='abs'))
    assert notes == ['the file is 900x1600 now; the log says 1800x3200']


def test_base64_rows_are_read_and_never_printed(images, tmp_path, capsys):
    """Issue 26 item 3: a base64 image row (raw text, a data URL, a {"bytes"} dict) is read as ms-swift
    reads it (swift_ext.images), and named by its sha1 and size in the terminal and the page."""
    import base64
    import hashlib
    w, h = 300, 500
    data = open(images[(w, h)], 'rb').read()
    text = base64.b64encode(data).decode()
    digest = hashlib.sha1(data).hexdigest()
    forms = [text, 'data:image/png;base64,' + text, {'bytes': text, 'path': None}]
    rows = []
    for form in forms:
        row = result_row('qwen2_5_vl', images, w, h)
        row['images'] = [form]
        rows.append(row)
    bad = result_row('qwen2_5_vl', images, w, h)
    bad['images'] = [base64.b64encode(b'not an image at all' * 200).decode()]  # > 2000 chars: base64
    rows.append(bad)
    path = write_result(tmp_path / 'result.jsonl', rows)
    page = tmp_path / 'score.html'
    assert score.main([path, '--template', 'qwen2_5_vl', '--html', str(page)]) == 0
    out = capsys.readouterr()
    r = score_file(path, default_settings('qwen2_5_vl'), 'abs')
    assert (r['scored'], r['not_scored']) == (3, 1) and r['mean_iou'] == pytest.approx(1.0, abs=1e-9)
    html = page.read_text()
    for shown in (out.out, out.err, html, json.dumps(r['problems'])):
        assert text[:40] not in shown and bad['images'][0][:40] not in shown
    assert 'sha1:' in out.out and 'bytes' in out.out  # the unreadable one, named
    assert f'sha1:{digest[:12]}' in html and html.count('data:image/jpeg;base64,') == 3


def test_a_two_image_row_is_scored_and_drawn_on_the_image_its_index_names(images, tmp_path):
    """Issue 26 item 4: `image_index` (swift_ext.truth) names the image the boxes belong to, for
    `solution` and for ms-swift's `objects` (boxes of other images left out)."""
    (w0, h0), (w1, h1) = (640, 480), (300, 500)
    box = gt_box(w1, h1)
    two = [images[(w0, h0)], images[(w1, h1)]]
    by_solution = {'response': response_for('qwen2_5_vl', box, w1, h1), 'images': two, 'image_index': 1,
                   'solution': box}
    by_objects = {'response': response_for('qwen2_5_vl', box, w1, h1), 'images': two, 'image_index': 1,
                  'objects': {'ref': ['a', 'b'], 'bbox': [gt_box(w0, h0), box], 'bbox_type': 'real',
                              'image_id': [0, 1]}}
    out_of_range = dict(by_solution, image_index=2)
    path = write_result(tmp_path / 'result.jsonl', [by_solution, by_objects, out_of_range])
    r = score_file(path, default_settings('qwen2_5_vl'), 'abs', gallery=4)
    assert (r['scored'], r['not_scored']) == (2, 1) and r['mean_iou'] == pytest.approx(1.0, abs=1e-9)
    assert r['by_original_size'] == {'< 0.25 MP': r['by_original_size']['< 0.25 MP']}  # 300x500 only
    [problem] = r['problems']
    assert problem['kind'] == 'image_index' and 'names no image of a row with 2 image(s)' in problem['example']
    page = tmp_path / 'score.html'
    assert score.main([path, '--template', 'qwen2_5_vl', '--html', str(page), '--json',
                       '--images-under', os.path.dirname(two[0])]) == 0
    text = page.read_text()
    assert text.count('<th>original</th><td>300x500</td>') == 2 and '640x480' not in text


def test_settings_that_differ_from_the_inference_are_named(images, tmp_path, monkeypatch, capsys):
    """Issue 26 item 5: scored without the inference's IMAGE_MAX_TOKEN_NUM, IoU fell from 1.0 to 0.83
    with no warning. The plugin's inference log beside the result (written here by swift_ext.inference's
    own code) and ms-swift's args.json are read, and each differing setting is named."""
    from types import SimpleNamespace

    from swift_ext import inference, runlog
    result = str(tmp_path / 'infer_result' / 'result.jsonl')
    os.makedirs(os.path.dirname(result))
    env = {'IMAGE_MAX_TOKEN_NUM': '1024'}
    at_inference = settings_for('qwen2_5_vl_geo', env=env)
    for name in (runlog.ENV_DIR, runlog.ENV_ROLE, runlog.ENV_CHANNEL, 'IMAGE_MAX_TOKEN_NUM', 'MAX_PIXELS'):
        monkeypatch.delenv(name, raising=False)
    args = SimpleNamespace(result_path=result, model='ckpt', model_type='qwen2_5_vl', template='qwen2_5_vl_geo',
                           max_pixels=None, infer_backend='transformers', val_dataset=['test.jsonl'])
    inference._start(SimpleNamespace(args=args, template=SimpleNamespace(geo_settings=lambda: at_inference)))
    for name in (runlog.ENV_DIR, runlog.ENV_ROLE):
        monkeypatch.delenv(name, raising=False)  # scoring is not the inference
    w, h = 1280, 960
    box = gt_box(w, h)
    g, _ = at_inference.predict(width=w, height=h)
    response = json.dumps([{'bbox_2d': g.to_model_frame(box, 'abs')}])
    write_result(result, [{'response': response, 'solution': box, 'images': [images[(w, h)]]}])

    assert score.main([result, '--template', 'qwen2_5_vl', '--json']) == 0
    r = json.loads(capsys.readouterr().out)
    assert r['mean_iou'] < 0.9
    assert r['inference']['sources'] == [os.path.join('result_geometry', 'geometry_settings.jsonl'),
                                         os.path.join('result_geometry', 'infer_args.json')]
    [warning] = r['inference']['warnings']
    assert warning.startswith('max_pixels was 802816 at inference') and 'IMAGE_MAX_TOKEN_NUM' in warning
    assert score.main([result, '--template', 'qwen2_5_vl']) == 0
    assert '! max_pixels was 802816 at inference' in capsys.readouterr().out

    monkeypatch.setenv('IMAGE_MAX_TOKEN_NUM', '1024')  # the inference's settings: no warning, IoU 1.0
    assert score.main([result, '--template', 'qwen2_5_vl', '--json']) == 0
    r = json.loads(capsys.readouterr().out)
    assert r['inference']['warnings'] == [] and r['mean_iou'] == pytest.approx(1.0, abs=1e-9)


def test_settings_that_differ_only_in_form_are_not_named():
    """A live template records the processor's defaults (max_pixels 12845056, min_pixels 3136) where the
    scoring settings say None for the same limits: no false warning; a real difference names only itself."""
    import dataclasses

    from swift_ext.cli.score.recorded import geometry_differences
    now = default_settings('qwen2_5_vl')
    live = dataclasses.replace(now, max_pixels=12845056, min_pixels=3136).to_dict()
    assert geometry_differences(live, now) == {}
    smaller = dataclasses.replace(now, max_pixels=802816, min_pixels=3136).to_dict()
    assert geometry_differences(smaller, now) == {'max_pixels': (802816, None)}


def test_swift_args_json_beside_the_result_is_read(images, tmp_path, capsys, monkeypatch):
    """`swift infer --ckpt_dir CKPT` writes CKPT/infer_result/<time>.jsonl; CKPT/args.json holds --max_pixels."""
    monkeypatch.delenv('MAX_PIXELS', raising=False)
    ckpt = tmp_path / 'ckpt'
    (ckpt / 'infer_result').mkdir(parents=True)
    (ckpt / 'args.json').write_text(json.dumps({'max_pixels': 50176, 'template': 'qwen2_5_vl'}))
    result = write_result(ckpt / 'infer_result' / '20261206-101010.jsonl', [result_row('qwen2_5_vl', images, 640, 480)])
    assert score.main([result, '--template', 'qwen2_5_vl', '--json']) == 0
    r = json.loads(capsys.readouterr().out)
    assert r['inference']['sources'] == [os.path.join('..', 'args.json')]
    assert r['inference']['warnings'] == ['--max_pixels was 50176 at inference (../args.json), None now: pass the '
                                          'same --max_pixels as the inference']
    assert score.main([result, '--template', 'qwen2_5_vl', '--max_pixels', '50176', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['inference']['warnings'] == []
    assert score.main([result, '--template', 'internvl3_5', '--max_pixels', '50176', '--json']) == 0
    assert 'the inference ran template qwen2_5_vl' in json.loads(capsys.readouterr().out)['inference']['warnings'][0]


def test_per_row_iou_in_json_and_rows_file(images, tmp_path, capsys):
    """Issue 26 (expected): `score --json` lists each row's IoU; `--rows FILE` writes every row."""
    rows = [result_row('qwen2_5_vl', images, w, h, shift=s) for (w, h), s in zip(SIZES[:3], (0, 40, 0), strict=True)]
    rows[0]['id'] = 'a-1'
    rows.insert(2, {'response': 'x', 'solution': [1, 2, 3, 4], 'images': ['/nope/gone.png']})
    path = write_result(tmp_path / 'result.jsonl', rows)
    out = tmp_path / 'rows.jsonl'
    assert score.main([path, '--template', 'qwen2_5_vl', '--json', '--rows', str(out)]) == 0
    captured = capsys.readouterr()
    r = json.loads(captured.out)
    assert f'Rows: {out}' in captured.err
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == r['per_row'] and r['per_row_left_out'] == 0
    assert [x['row'] for x in written] == [1, 2, 3, 4]
    assert written[0]['id'] == 'a-1' and written[0]['iou'] == pytest.approx(1.0, abs=1e-9)
    assert written[0]['original'] == '640x480' and written[0]['image'] == images[(640, 480)]
    w, h = SIZES[1]
    box = gt_box(w, h)
    assert written[1]['iou'] == pytest.approx((box[2] - box[0] - 40) / (box[2] - box[0] + 40), abs=1e-6)
    assert written[2] == {'row': 3, 'not_scored': 'missing', 'why': 'image /nope/gone.png: missing'}
    assert sum(x['iou'] for x in written if 'iou' in x) / 3 == pytest.approx(r['mean_iou'])
    assert score.main([path, '--template', 'qwen2_5_vl', '--rows', '-']) == 2
    assert score.main([path, '--template', 'qwen2_5_vl']) == 0
    assert 'settings at inference: not recorded beside the result file (no result_geometry/' in capsys.readouterr().out
