"""A real `swift infer --result_path` run on the tiny Qwen2.5-VL, then `swift-ext score` on its file.

The tiny model answers with filler, so the numbers are 0 with every row "no box": the test proves
the plumbing (the result file's real shape: `images` dicts, `objects`, `chat_template_kwargs`, the
`solution` ms-swift drops, joined back with --dataset). Exact metrics are in tests/unit/test_score.py.
"""
import json
import os
import subprocess
import sys

from swift_ext.testing.images import make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(ROOT, 'templates', 'plugin.py')
BIN = os.path.dirname(sys.executable)
SIZES = (('tiny', 50, 60), ('landscape', 160, 120), ('portrait', 90, 150))


def test_score_a_real_infer_result(tiny_model, tmp_path):
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    rows = [json.loads(x) for x in open(data)]
    rows[1]['chat_template_kwargs'] = {'max_pixels': 12544}
    box = rows[2].pop('solution')  # this row's truth in ms-swift's grounding format instead
    rows[2]['objects'] = {'ref': ['red box'], 'bbox': [box], 'bbox_type': 'real'}
    with open(data, 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
    result = tmp_path / 'result.jsonl'
    # `swift infer` has no --check_model; extra columns (`solution`) are dropped from its rows.
    cmd = [os.path.join(BIN, 'swift'), 'infer', '--model', tiny_model('qwen2_5_vl'), '--model_type', 'qwen2_5_vl',
           '--template', 'qwen2_5_vl_geo', '--external_plugins', PLUGIN, '--val_dataset', data,
           '--result_path', str(result), '--max_new_tokens', '8', '--infer_backend', 'transformers']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = [json.loads(x) for x in open(result)]
    assert [r['images'][0]['path'] for r in written] == [r['images'][0] for r in rows]
    assert 'solution' not in written[0] and written[2]['objects']['bbox'] == [box]

    # The geometry of each image as the inference encoded it, beside the results.
    log = tmp_path / 'result_geometry'
    lines = [json.loads(x) for x in (log / 'image_geometry.jsonl').read_text().splitlines()]
    assert sorted(x['image'] for x in lines) == sorted(r['images'][0] for r in rows)
    assert {(x['mode'], x['basis'], x['template']) for x in lines} == {('rollout', 'encode', 'qwen2_5_vl_geo')}
    by_image = {x['image']: x for x in lines}
    assert by_image[rows[1]['images'][0]]['resized_width'] * by_image[rows[1]['images'][0]]['resized_height'] <= 12544
    [settings] = [json.loads(x) for x in (log / 'geometry_settings.jsonl').read_text().splitlines()]
    assert settings['role'] == 'inference' and settings['settings']['template'] == 'qwen2_5_vl_geo'
    assert json.loads((log / 'infer_args.json').read_text())['result_path'] == str(result)

    score = [os.path.join(BIN, 'swift-ext'), 'score', str(result), '--template', 'qwen2_5_vl', '--json']
    alone = subprocess.run(score, capture_output=True, text=True, timeout=120)
    assert alone.returncode == 0, alone.stderr
    r = json.loads(alone.stdout)
    assert (r['rows'], r['scored']) == (3, 1)  # only the `objects` row has truth in the file
    # Issue 26 item 5: the settings the inference recorded are read; here they are the scoring's own
    # (the live template's 12845056 / 3136 are the None defaults score assumes: no false warning).
    assert r['inference'] == {'sources': [os.path.join('result_geometry', 'geometry_settings.jsonl'),
                                          os.path.join('result_geometry', 'infer_args.json')], 'warnings': []}
    other = subprocess.run(score, capture_output=True, text=True, timeout=120,
                           env={**os.environ, 'MAX_PIXELS': '50176'})
    [warning] = json.loads(other.stdout)['inference']['warnings']
    assert warning.startswith('max_pixels was 12845056 at inference') and 'MAX_PIXELS' in warning
    assert r['problems'][0]['kind'] == 'no ground truth' and r['problems'][0]['row_numbers'] == [1, 2]

    page = tmp_path / 'score.html'
    joined = subprocess.run(score + ['--dataset', data, '--html', str(page)], capture_output=True, text=True,
                            timeout=120)
    assert joined.returncode == 0, joined.stderr
    r = json.loads(joined.stdout)
    assert (r['rows'], r['scored'], r['not_scored']) == (3, 3, 0)
    assert r['no_box'] == 3 and r['mean_iou'] == 0.0  # a random model writes no box
    assert page.read_text().count('data:image/jpeg;base64,') == 3
