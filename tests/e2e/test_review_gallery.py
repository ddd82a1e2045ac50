"""A real GRPO run with `--log_completions true`, then `swift-ext review`: the gallery finds each row's
image, and `report.html` renders in headless Chromium with no JavaScript error and no broken image.
`swift-ext score`'s page is checked the same way, with a base64 image row and a 2-image row.

The tiny model writes filler, so after the run its completions are replaced by answers built from
each row's ground truth (shifted by known amounts) in Qwen2.5-VL's frame: the gallery then has boxes
to draw and the IoUs it prints are known. `docs/review_gallery.png` is taken from this page.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from swift_ext.scoring import iou_score
from swift_ext.settings import default_settings
from swift_ext.testing.images import make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(ROOT, 'templates', 'plugin.py')
BIN = os.path.dirname(sys.executable)
CHROMIUM = '/usr/bin/chromium'
SIZES = (('tiny', 50, 60), ('landscape', 160, 120), ('portrait', 90, 150), ('wide', 300, 40))
SHIFTS = (0.0, 0.1, 0.25, 0.5)  # of the box width

# Registered before the page's own scripts: records errors, then checks every image and a sort.
PROBE_HEAD = """<script>window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e)); });</script>"""
PROBE_TAIL = """<script>window.addEventListener('load', function () {
  var broken = Array.prototype.filter.call(document.images, function (i) { return !i.complete || !i.naturalWidth; });
  var th = document.querySelector('table.sortable th');
  try { if (th) { th.click(); th.click(); } } catch (e) { window.__errors.push(String(e)); }
  var out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify({errors: window.__errors, images: document.images.length, broken: broken.length,
    overflow: document.documentElement.scrollWidth - window.innerWidth});
  document.body.appendChild(out);
});</script>"""
GALLERY_ONLY = """<style>body>*{display:none!important}h2#gallery,h2#gallery+p{display:block!important}
.gallery{display:grid!important}
body{max-width:1240px}</style>"""


def grpo_run(tiny_model, tmp_path, logging_steps: int = 1) -> str:
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    rows = [dict(json.loads(line), image_index=0) for line in open(data)]  # the truth's image, said explicitly
    with open(data, 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
    cmd = [os.path.join(BIN, 'swift'), 'rlhf', '--rlhf_type', 'grpo', '--model', tiny_model('qwen2_5_vl'),
           '--model_type', 'qwen2_5_vl', '--template', 'qwen2_5_vl_geo', '--external_plugins', PLUGIN,
           '--callbacks', 'geo_log', '--reward_funcs', 'geo_iou', 'geo_format', '--dataset', data,
           '--num_generations', '2', '--per_device_train_batch_size', '4', '--max_completion_length', '4',
           '--max_steps', '2', '--tuner_type', 'lora', '--torch_dtype', 'float32', '--report_to', 'none',
           '--check_model', 'false', '--log_completions', 'true', '--output_dir', str(tmp_path / 'out'),
           '--logging_steps', str(logging_steps), '--save_strategy', 'no', '--dataloader_num_workers', '0',
           '--seed', '1']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(tmp_path / 'out')


def answer_with_boxes(run_dir: str) -> dict:
    """Replace each completion by its truth shifted right; return {(step, row): IoU}."""
    path = os.path.join(run_dir, 'completions.jsonl')
    settings = default_settings('qwen2_5_vl')
    tables, expected = [json.loads(x) for x in open(path)], {}
    assert all(t['geo_image_index'] == [0] * len(t['step']) for t in tables)  # geo_log writes each row's image_index
    for table in tables:
        ious = []
        for i, solution in enumerate(table['solution']):
            (ow, oh), (rw, rh) = (map(int, table[k][i].split('x')) for k in ('geo_original_size', 'geo_resized_size'))
            shift = SHIFTS[i % len(SHIFTS)] * (solution[2] - solution[0])
            box = [(solution[0] + shift) * rw / ow, solution[1] * rh / oh, (solution[2] + shift) * rw / ow,
                   solution[3] * rh / oh]
            table['completion'][i] = 'The red box: ' + json.dumps([{'bbox_2d': [round(v, 2) for v in box],
                                                                   'label': 'red <box> & co'}])
            geo, _ = settings.predict(width=ow, height=oh)
            ious.append(iou_score(table['completion'][i], solution, geo, 'abs'))
            expected[(table['step'][i], i)] = ious[-1]
        table['GeoIoU'] = ious
    with open(path, 'w') as f:
        f.writelines(json.dumps(t) + '\n' for t in tables)
    return expected


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f'{CHROMIUM} is absent (apt-get install chromium)')
def test_review_gallery_in_a_real_browser(tiny_model, tmp_path):
    out = grpo_run(tiny_model, tmp_path)
    [run] = os.listdir(out)
    expected = answer_with_boxes(os.path.join(out, run))
    proc = subprocess.run([os.path.join(BIN, 'swift-ext'), 'review', out, '--json'], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'reviewing the newest, {run}' in proc.stderr
    summary = json.loads(proc.stdout)
    gallery = summary['gallery']
    assert len(gallery) == 8  # all 8 rows (2 steps x 4) fit the default of 12
    for item in gallery:
        assert item['image'] and os.path.basename(item['image']).split('_')[0] in {n for n, _, _ in SIZES}
        assert not [n for n in item['notes'] if 'not identified' in n], item['notes']
        assert item['iou'] in [pytest.approx(v, abs=1e-6) for v in expected.values()]
    assert max(i['iou'] for i in gallery) == pytest.approx(1.0, abs=1e-6)
    report = os.path.join(out, run, 'review', 'report.html')
    page = open(report).read()
    assert page.count('data:image/jpeg;base64,') == 8 and 'red &lt;box&gt; &amp; co' in page

    probe = str(tmp_path / 'probe.html')
    with open(probe, 'w') as f:
        f.write(page.replace('<head>', '<head>' + PROBE_HEAD, 1).replace('</body>', PROBE_TAIL + '</body>'))
    dom = chromium('--virtual-time-budget=5000', '--dump-dom', 'file://' + probe)
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert m, dom.stderr[-2000:]
    result = json.loads(m.group(1).replace('&quot;', '"'))
    assert result['errors'] == [] and result['broken'] == 0, result
    assert result['images'] >= 8 + 4  # the gallery and the plots

    # The screenshot README shows: the gallery part of the same page.
    gallery_page = str(tmp_path / 'gallery.html')
    with open(gallery_page, 'w') as f:
        f.write(page.replace('</head>', GALLERY_ONLY + '</head>', 1))
    shot = str(tmp_path / 'review_gallery.png')
    chromium(f'--screenshot={shot}', '--window-size=1280,1500', 'file://' + gallery_page)
    assert os.path.getsize(shot) > 10000
    if os.environ.get('SWIFT_EXT_UPDATE_SCREENSHOT'):
        shutil.copy(shot, os.path.join(ROOT, 'docs', 'review_gallery.png'))


def browser_probe(page: str, tmp_path) -> dict:
    """Load ``page`` in headless Chromium with the probe scripts; what the probe saw."""
    probe = str(tmp_path / 'probe.html')
    with open(probe, 'w') as f:
        f.write(page.replace('<head>', '<head>' + PROBE_HEAD, 1).replace('</body>', PROBE_TAIL + '</body>'))
    dom = chromium('--virtual-time-budget=5000', '--window-size=1280,1500', '--dump-dom', 'file://' + probe)
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert m, dom.stderr[-2000:]
    return json.loads(m.group(1).replace('&quot;', '"'))


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f'{CHROMIUM} is absent (apt-get install chromium)')
def test_score_report_in_a_real_browser(tmp_path):
    """Issue 26 items 3 and 4 in a browser: a base64 row is drawn and named by its sha1 (no payload runs
    off the page), and a 2-image row is drawn on the image its image_index names."""
    import base64

    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    rows = [json.loads(line) for line in open(data)]
    settings = default_settings('qwen2_5_vl')

    def answer(row, index=0):
        from PIL import Image
        with Image.open(row['images'][index]) as img:
            geo, _ = settings.predict(width=img.width, height=img.height)
        box = geo.to_model_frame(row['solution'], 'abs')
        return json.dumps([{'bbox_2d': [round(v, 2) for v in box], 'label': 'red <box> & co'}])
    inline = dict(rows[1], response=answer(rows[1]))
    text = base64.b64encode(open(rows[1]['images'][0], 'rb').read()).decode()
    inline['images'] = [text]
    two = dict(rows[2], response=answer(rows[2]), images=[rows[0]['images'][0], rows[2]['images'][0]], image_index=1)
    plain = dict(rows[3], response=answer(rows[3]))
    result = str(tmp_path / 'result.jsonl')
    with open(result, 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in (inline, two, plain))
    page_path = str(tmp_path / 'score.html')
    command = [os.path.join(BIN, 'swift-ext'), 'score', result, '--template', 'qwen2_5_vl', '--html', page_path,
               '--images-under', os.path.dirname(data), '--json']
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert (r['scored'], r['mean_iou']) == (3, pytest.approx(1.0, abs=1e-3))
    page = open(page_path).read()
    assert text[:40] not in page and text[-40:] not in page and 'sha1:' in page
    assert page.count('data:image/jpeg;base64,') == 3
    w, h = next((w, h) for n, w, h in SIZES if os.path.basename(rows[2]['images'][0]).startswith(n))
    assert f'<th>original</th><td>{w}x{h}</td>' in page
    result_probe = browser_probe(page, tmp_path)
    assert result_probe['errors'] == [] and result_probe['broken'] == 0, result_probe
    assert result_probe['images'] == 3 and result_probe['overflow'] <= 0, result_probe


def test_review_reads_the_last_step_from_the_train_summary(tiny_model, tmp_path):
    """Issue 26 item 1 on a real run: with --logging_steps past the last step, ms-swift writes step 2's
    metrics only into the train-summary line of logging.jsonl; review reads them."""
    out = grpo_run(tiny_model, tmp_path, logging_steps=5)
    [run] = os.listdir(out)
    lines = [json.loads(x) for x in open(os.path.join(out, run, 'logging.jsonl'))]
    step_two = [x for x in lines if x.get('global_step/max_steps') == '2/2' and 'rewards/GeoIoU/mean' in x]
    assert len(step_two) == 1 and 'train_runtime' in step_two[0]  # the case this test is about
    proc = subprocess.run([os.path.join(BIN, 'swift-ext'), 'review', os.path.join(out, run), '--json', '--no-plots'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary['steps'] == 2
    assert [p[0] for p in summary['series']['rewards/GeoIoU/mean']] == [1, 2]
    assert summary['series']['rewards/GeoIoU/mean'][1][1] == pytest.approx(step_two[0]['rewards/GeoIoU/mean'])
