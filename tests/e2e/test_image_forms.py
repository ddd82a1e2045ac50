"""One real tiny GRPO run (`qwen2_5_vl_geo`, `geo_iou`, `--callbacks geo_log`) over rows giving images in
every form a dataset file can carry to ms-swift: absolute and relative paths, raw bytes, a realistic raw
base64 string (~640 KB), a short one and a data URL. Every sample gets its geometry (so a numeric IoU),
every log line is short and names `sha1:` or a real absolute path, and `plan` on the same dataset agrees.

(PIL images and http URLs cannot come from a dataset file offline; tests/unit/test_images.py covers them.)
"""
import base64
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest
from PIL import Image

from swift_ext.cli.plan.run import plan_dataset
from swift_ext.cli.plan.work import plan_settings
from swift_ext.testing.tiny import run_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(ROOT, 'tests', 'e2e', 'plugins', 'probe.py')
SWIFT = os.path.join(os.path.dirname(sys.executable), 'swift')
SHA1 = re.compile(r'sha1:[0-9a-f]{40}')


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format='PNG')
    return buf.getvalue()


def _dataset(work):
    """A parquet dataset (images as {'bytes', 'path'} structs, as ms-swift casts them): one row per form."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    (work / 'rel').mkdir()
    Image.new('RGB', (640, 480), (200, 200, 200)).save(work / 'rel' / 'landscape.png')
    Image.new('RGB', (300, 500), (100, 200, 100)).save(work / 'portrait.png')
    noisy = Image.frombytes('RGB', (400, 400), os.urandom(400 * 400 * 3))  # ~480 KB: base64 of ~640 KB
    small = _png(Image.new('RGB', (50, 60), (10, 10, 200)))
    forms = {
        'absolute path': (None, str(work / 'portrait.png')),
        'relative path': (None, 'rel/landscape.png'),
        'raw bytes': (_png(Image.new('RGB', (448, 448), (9, 9, 9))), None),
        'long raw base64': (None, base64.b64encode(_png(noisy)).decode()),
        'short raw base64': (None, base64.b64encode(small).decode()),
        'data URL': (None, 'data:image/png;base64,' + base64.b64encode(_png(Image.new('RGB', (900, 120)))).decode()),
    }
    rows = [{'messages': [{'role': 'user', 'content': '<image>Locate the box. Answer [x1, y1, x2, y2].'}],
             'images': [{'bytes': data, 'path': path}], 'solution': [10, 10, 40, 40], 'form': name}
            for name, (data, path) in forms.items()]
    path = work / 'forms.parquet'
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path), forms


@pytest.fixture(scope='module')
def run(tiny_model, tmp_path_factory):
    work = tmp_path_factory.mktemp('forms')
    dataset, forms = _dataset(work)
    probe_out = work / 'probe.jsonl'
    cmd = [SWIFT, 'rlhf', '--rlhf_type', 'grpo', '--model', tiny_model('qwen2_5_vl'),
           '--model_type', run_flags('qwen2_5_vl')['model_type'], '--template', 'qwen2_5_vl_geo',
           '--external_plugins', PROBE, '--reward_funcs', 'geo_iou', 'geo_probe', '--callbacks', 'geo_log',
           '--dataset', dataset, '--num_generations', '2', '--per_device_train_batch_size', str(2 * len(forms)),
           '--max_completion_length', '8', '--max_steps', '1', '--tuner_type', 'lora', '--torch_dtype', 'float32',
           '--report_to', 'none', '--check_model', 'false', '--log_completions', 'true',
           '--output_dir', str(work / 'out'), '--logging_steps', '1', '--save_strategy', 'no',
           '--dataloader_num_workers', '0', '--seed', '1']
    env = {k: v for k, v in os.environ.items() if k not in ('MAX_PIXELS', 'MIN_PIXELS', 'IMAGE_MAX_TOKEN_NUM',
                                                            'IMAGE_MIN_TOKEN_NUM', 'ROOT_IMAGE_DIR')}
    proc = subprocess.run(cmd, cwd=str(work), capture_output=True, text=True, timeout=600,
                          env={**env, 'GEO_PROBE_OUT': str(probe_out), 'PYTHONPATH': ROOT})
    tail = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    run_dir = sorted((work / 'out').glob('v*-*'))[-1]
    probe = [json.loads(line) for line in probe_out.read_text().splitlines()]
    return {'work': work, 'dataset': dataset, 'forms': forms, 'probe': probe, 'run_dir': run_dir,
            'output': proc.stdout + proc.stderr}


def test_every_sample_gets_geometry_from_the_template(run):
    probe = run['probe']
    assert len(probe) == 2 * len(run['forms'])
    for line in probe:
        assert line['geometry'] is not None and len(line['geometry']) == 1, line['paths'][0][:60]
        assert line['from_template'] == [True]  # the reward found the template's own record


def test_iou_is_numeric_for_every_sample(run):
    lines = [json.loads(x) for x in (run['run_dir'] / 'completions.jsonl').read_text().splitlines()]
    values = [v for line in lines for v in (line['GeoIoU'] if isinstance(line['GeoIoU'], list) else [line['GeoIoU']])]
    assert len(values) >= 2 * len(run['forms'])
    assert all(isinstance(v, (int, float)) and v == v for v in values), values  # no None, no NaN


def test_geometry_lines_are_short_and_name_sha1_or_a_real_path(run):
    lines = (run['run_dir'] / 'image_geometry.jsonl').read_text().splitlines()
    assert lines
    names = set()
    for text in lines:
        assert len(text.encode()) < 1024, text[:200]
        record = json.loads(text)
        image = record['image']
        assert SHA1.fullmatch(image) or (os.path.isabs(image) and os.path.isfile(image)), image[:100]
        if image.startswith('sha1:'):
            assert record['image_bytes'] > 0
        names.add(image)
    assert len([n for n in names if n.startswith('sha1:')]) == 4  # bytes, long and short base64, data URL
    assert str(run['work'] / 'rel' / 'landscape.png') in names  # the relative path, resolved as ms-swift does
    assert max(len(line) for line in run['output'].splitlines()) < 20_000  # no payload in any warning


def test_plan_agrees_with_the_run(run, monkeypatch):
    monkeypatch.chdir(run['work'])
    for name in ('MAX_PIXELS', 'MIN_PIXELS', 'IMAGE_MAX_TOKEN_NUM', 'IMAGE_MIN_TOKEN_NUM', 'ROOT_IMAGE_DIR'):
        monkeypatch.delenv(name, raising=False)
    stats = plan_dataset(run['dataset'], plan_settings('qwen2_5_vl_geo'), sweep=[], workers=1)
    assert stats.failures == [] and stats.remote == 0
    run_tokens = Counter(line['geometry'][0]['num_tokens'] for line in run['probe'])
    assert Counter({t: 2 * n for t, n in stats.tokens_per_image.items()}) == run_tokens  # 2 generations each
