"""Real `swift rlhf --rlhf_type grpo` runs on tiny MiniCPM-V 4.6 / 4.7 checkpoints: the geometry the
rewards receive and the `geo_log` records equal what the MiniCPM-V processor makes of each file."""
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
# No slices (the source upscaled to ~448**2), 1 row x 2 slices, 4 rows x 1 slice.
SIZES = [('tiny', 50, 60), ('landscape', 640, 480), ('tall', 300, 2000)]


def run_grpo(tiny_model, tmp_path, parent, sizes):
    """One GRPO step over every image of ``sizes`` with geo_log; (probe lines, geo_log records)."""
    data = make_dataset(str(tmp_path / 'data'), sizes=sizes)
    probe_out, stats = tmp_path / 'probe.jsonl', tmp_path / 'time.txt'
    cmd = ['/usr/bin/time', '-f', '%e %M', '-o', str(stats),
           SWIFT, 'rlhf', '--rlhf_type', 'grpo', '--model', tiny_model(parent),
           '--model_type', run_flags(parent)['model_type'], '--template', parent + '_geo',
           '--external_plugins', PROBE, '--reward_funcs', 'geo_iou', 'geo_format', 'geo_probe',
           '--callbacks', 'geo_log', '--dataset', data, '--num_generations', '2',
           '--per_device_train_batch_size', str(2 * len(sizes)), '--max_completion_length', '8',
           '--max_steps', '1', '--tuner_type', 'lora', '--torch_dtype', 'float32', '--report_to', 'none',
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
    return read(probe_out), read(run_dir / 'image_geometry.jsonl')


def processor_geometry(model_dir, path):
    """(resized w, h, tokens, views, rows, cols) the checkpoint's own processor gives the file, ms-swift's way."""
    from swift.template.vision_utils import load_image
    from transformers import AutoProcessor
    proc = AutoProcessor.from_pretrained(model_dir)
    out = proc.image_processor([load_image(path)], max_slice_nums=9, return_tensors='pt')
    sizes = out['target_sizes'].tolist()
    rows, cols = out['grids'][0]
    view_h, view_w = sizes[1] if rows else sizes[0]
    return (view_w * 14 * max(cols, 1), view_h * 14 * max(rows, 1), sum(h * w for h, w in sizes) // 16,
            len(sizes), rows, cols)


@pytest.mark.parametrize('parent', ['minicpmv4_6', 'minicpmv4_7'])
def test_grpo_minicpmv(tiny_model, tmp_path, parent):
    lines, records = run_grpo(tiny_model, tmp_path, parent, SIZES)
    assert len(lines) == 2 * len(SIZES)  # each image x 2 generations
    expected = {}
    for line in lines:
        path, geo = line['paths'][0], line['geometry'][0]
        if path not in expected:
            expected[path] = processor_geometry(tiny_model(parent), path)
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        got = (geo['resized_width'], geo['resized_height'], geo['num_tokens'], geo['num_tiles'],
               geo['tile_rows'] or 0, geo['tile_cols'] or 0)
        assert got == expected[path], path
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
    # geo_log: a rollout and a train record per sample, each what the processor did to its file.
    assert sorted(r['mode'] for r in records) == ['rollout'] * 6 + ['train'] * 6
    for r in records:
        assert r['error'] is None and r['mismatch'] is None and r['template'] == parent + '_geo', r
        assert (r['resized_width'], r['resized_height'], r['num_tokens'], r['num_tiles']) == expected[r['image']][:4]
    views = {os.path.basename(p).split('_')[0]: g[3:] for p, g in expected.items()}
    assert views == {'tiny': (1, 0, 0), 'landscape': (3, 1, 2), 'tall': (5, 4, 1)}  # (views, rows, cols)
