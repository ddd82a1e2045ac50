"""A real `swift rlhf --rlhf_type grpo` step on a tiny Qwen3.5 (Qwen3_5ForConditionalGeneration, Gated-DeltaNet
on transformers' PyTorch fallbacks): the logged geometry and what the rewards received equal what ms-swift's
loader, rescale and qwen-vl-utils' fetch_image (patch 16) make of each file."""
import json
import os
import resource
import subprocess
import sys
import time

import pytest
from PIL import Image

from swift_ext.testing.images import make_dataset
from swift_ext.testing.tiny import run_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(ROOT, 'tests', 'e2e', 'plugins', 'probe.py')
SWIFT = os.path.join(os.path.dirname(sys.executable), 'swift')
# Small on purpose: logits over the 248,320-word vocabulary dominate memory (640x480 in a batch of 6: 8 GB).
SIZES = (('tiny', 50, 60), ('landscape', 320, 240), ('wide', 1000, 40))


def _grpo(model_dir, tmp_path, parent, env):
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    probe_out = tmp_path / 'probe.jsonl'
    cmd = [SWIFT, 'rlhf', '--rlhf_type', 'grpo', '--model', model_dir,
           '--model_type', run_flags(parent)['model_type'], '--template', parent + '_geo',
           '--external_plugins', PROBE, '--reward_funcs', 'geo_iou', 'geo_format', 'geo_probe',
           '--callbacks', 'geo_log', '--dataset', data, '--num_generations', '2',
           '--per_device_train_batch_size', str(2 * len(SIZES)), '--max_completion_length', '8',
           '--max_steps', '1', '--tuner_type', 'lora', '--torch_dtype', 'float32', '--report_to', 'none',
           '--check_model', 'false', '--output_dir', str(tmp_path / 'out'), '--logging_steps', '1',
           '--save_strategy', 'no', '--dataloader_num_workers', '0', '--seed', '1']
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, 'GEO_PROBE_OUT': str(probe_out), **env})
    seconds = time.perf_counter() - start
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[text.rfind('Traceback'):][-4000:]
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f'\n{parent} GRPO step: {seconds:.1f} s, peak child RSS {peak_mb:.0f} MB')
    [run_dir] = sorted((tmp_path / 'out').glob('v*-*'))
    probe = [json.loads(x) for x in probe_out.read_text().splitlines()]
    logged = [json.loads(x) for x in (run_dir / 'image_geometry.jsonl').read_text().splitlines()]
    return probe, logged


def _expected(path, env):
    """The size ms-swift's template gives this file: load, then fetch_image at patch 16."""
    from qwen_vl_utils import fetch_image
    from swift.template.vision_utils import load_image
    kwargs = {}
    if 'MAX_PIXELS' in env:  # the loader's compat_qwen_vl_utils(16): tokens = MAX_PIXELS // 32**2
        kwargs['max_pixels'] = int(env['MAX_PIXELS']) // 32 ** 2 * 32 ** 2
    return fetch_image({'image': load_image(path), **kwargs}, image_patch_size=16).size


@pytest.mark.parametrize('parent,env', [('qwen3_5', {}), ('qwen3_8', {'MAX_PIXELS': '50176'})])
def test_grpo_qwen3_5(tiny_model, tmp_path, parent, env):
    probe, logged = _grpo(tiny_model(parent), tmp_path, parent, env)
    assert len(probe) == 2 * len(SIZES)
    files = {f'{n}_{w}x{h}.png' for n, w, h in SIZES}
    assert {os.path.basename(line['paths'][0]) for line in probe} == files
    for line in probe:  # what the rewards received
        path, geo = line['paths'][0], line['geometry'][0]
        size = _expected(path, env)
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        assert (geo['resized_width'], geo['resized_height']) == size, path
        assert geo['num_tokens'] == size[0] * size[1] // 32 ** 2
        assert geo['grid'] == [1, size[1] // 16, size[0] // 16]
        assert line['coords'] == 'norm1000' and line['template'] == parent + '_geo'
        assert line['from_template'] == [True]
    # what geo_log wrote: one record per image per encode (rollout and train), all as the processor gives
    assert {r['mode'] for r in logged} == {'rollout', 'train'}
    assert {os.path.basename(r['image']) for r in logged} == files
    for record in logged:
        size = _expected(record['image'], env)
        assert (record['resized_width'], record['resized_height']) == size, record['image']
        assert record['num_tokens'] == size[0] * size[1] // 32 ** 2
