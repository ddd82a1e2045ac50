"""Real `swift rlhf --rlhf_type grpo` runs on tiny Mistral 3 and Pixtral checkpoints: the geometry the
rewards receive and the `geo_log` records equal what the Pixtral processor makes of each file."""
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from swift_ext.testing.images import make_dataset
from swift_ext.testing.tiny import run_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(ROOT, 'tests', 'e2e', 'plugins', 'probe.py')
SWIFT = os.path.join(os.path.dirname(sys.executable), 'swift')
# 2000x300 is cut to the 1540 (Mistral 3) / 1024 (Pixtral) edge; the others are only rounded up.
SIZES = [('tiny', 50, 60), ('wide', 1000, 40), ('big', 2000, 300), ('portrait', 300, 500)]
# ms-swift 4.6's Mistral2503Template / PixtralTemplate concatenate `pixel_values` as they are, so a
# batch cannot hold two resized sizes: one prompt (x 2 generations) a step, one step per image.


def run_grpo(tiny_model, tmp_path, parent, sizes):
    """One GRPO step per image of ``sizes`` with geo_log; (probe lines, geo_log records, seconds, peak RSS MB)."""
    data = make_dataset(str(tmp_path / 'data'), sizes=sizes)
    probe_out, stats = tmp_path / 'probe.jsonl', tmp_path / 'time.txt'
    cmd = ['/usr/bin/time', '-f', '%e %M', '-o', str(stats),
           SWIFT, 'rlhf', '--rlhf_type', 'grpo', '--model', tiny_model(parent),
           '--model_type', run_flags(parent)['model_type'], '--template', parent + '_geo',
           '--external_plugins', PROBE, '--reward_funcs', 'geo_iou', 'geo_format', 'geo_probe',
           '--callbacks', 'geo_log', '--dataset', data, '--num_generations', '2',
           '--per_device_train_batch_size', '2', '--max_completion_length', '8',
           '--max_steps', str(len(sizes)), '--tuner_type', 'lora', '--torch_dtype', 'float32', '--report_to', 'none',
           '--check_model', 'false', '--output_dir', str(tmp_path / 'out'), '--logging_steps', '1',
           '--save_strategy', 'no', '--dataloader_num_workers', '0', '--seed', '1']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, 'GEO_PROBE_OUT': str(probe_out)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[out.rfind('Traceback'):][-4000:]
    [run_dir] = sorted((tmp_path / 'out').glob('v*-*'))
    read = lambda path: [json.loads(x) for x in open(path).read().splitlines() if x.strip()]  # noqa: E731
    seconds, rss_kb = stats.read_text().split()[-2:]
    print(f'\nE2E {parent}: {float(seconds):.1f} s, peak RSS {int(rss_kb) / 1024:.0f} MB')
    return read(probe_out), read(run_dir / 'image_geometry.jsonl'), float(seconds), int(rss_kb) / 1024


def processor_geometry(model_dir, parent, path):
    """(resized width, height, tokens) the checkpoint's own processor gives the file, as ms-swift loads it."""
    from swift.template.vision_utils import load_image
    from transformers import AutoProcessor
    proc = AutoProcessor.from_pretrained(model_dir)
    patch = proc.patch_size * (1 if parent == 'pixtral' else proc.spatial_merge_size)
    height, width = proc.image_processor([load_image(path)], patch_size=patch, return_tensors='pt')['image_sizes'][0]
    rows, cols = int(height) // patch, int(width) // patch
    return int(width), int(height), rows * (cols + 1)


@pytest.mark.parametrize('parent', ['mistral_2503', 'pixtral'])
def test_grpo_pixtral_family(tiny_model, tmp_path, parent):
    lines, records, _, _ = run_grpo(tiny_model, tmp_path, parent, SIZES)
    assert len(lines) == 2 * len(SIZES)  # each image x 2 generations
    expected = {}
    for line in lines:
        path, geo = line['paths'][0], line['geometry'][0]
        if path not in expected:
            expected[path] = processor_geometry(tiny_model(parent), parent, path)
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        assert (geo['resized_width'], geo['resized_height'], geo['num_tokens']) == expected[path], path
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
    # geo_log: a rollout and a train record per sample, each what the processor did to its file.
    assert sorted(r['mode'] for r in records) == ['rollout'] * 8 + ['train'] * 8
    for r in records:
        assert r['error'] is None and r['mismatch'] is None and r['template'] == parent + '_geo', r
        assert (r['resized_width'], r['resized_height'], r['num_tokens']) == expected[r['image']], r
    big = [g for p, g in expected.items() if 'big_' in p][0]
    assert big[:2] == ((1540, 252) if parent == 'mistral_2503' else (1024, 160))
