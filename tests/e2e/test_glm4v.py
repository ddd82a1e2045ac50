"""A real tiny `swift rlhf --rlhf_type grpo` run on GLM-4.1V (``glm4v_geo`` / ``glm4_5v_geo``): the logged
geometry and the geometry the rewards got equal what transformers' GLM processor makes of each file."""
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
# Tiny (upscaled), ordinary, and 25:1 (small-side rule), each a different branch of smart_resize.
# Small on purpose: every visual token is a row of 151,552 logits, and 640x480 alone (391 tokens)
# took this run to 6.5 GB.
SIZES = (('tiny', 50, 60), ('landscape', 320, 240), ('wide', 1000, 40))


def run_grpo(model_dir, tmp_path, parent, sizes, *, rows=None):
    """One GRPO step over ``sizes`` with geo_log; (probe lines, geo_log records, seconds, peak RSS MB).

    ``rows``: extra fields per image name (``chat_template_kwargs``) for its dataset row.
    """
    data = make_dataset(str(tmp_path / 'data'), sizes=sizes)
    with open(data) as f:
        lines = [json.loads(x) for x in f]
    for line, (name, _, _) in zip(lines, sizes):
        line.update((rows or {}).get(name, {}))
    with open(data, 'w') as f:
        f.writelines(json.dumps(x) + '\n' for x in lines)
    probe_out, stats = tmp_path / 'probe.jsonl', tmp_path / 'time.txt'
    cmd = ['/usr/bin/time', '-f', '%e %M', '-o', str(stats),
           SWIFT, 'rlhf', '--rlhf_type', 'grpo', '--model', model_dir, '--model_type', run_flags(parent)['model_type'],
           '--template', parent + '_geo', '--external_plugins', PROBE, '--callbacks', 'geo_log',
           '--reward_funcs', 'geo_iou', 'geo_format', 'geo_probe', '--dataset', data, '--num_generations', '2',
           '--per_device_train_batch_size', str(2 * len(sizes)), '--max_completion_length', '8',
           '--max_steps', '1', '--tuner_type', 'lora', '--torch_dtype', 'float32', '--report_to', 'none',
           '--check_model', 'false', '--output_dir', str(tmp_path / 'out'), '--logging_steps', '1',
           '--save_strategy', 'no', '--dataloader_num_workers', '0', '--seed', '1']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, 'GEO_PROBE_OUT': str(probe_out)})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[text.rfind('Traceback'):][-4000:]
    seconds, rss_kb = stats.read_text().split()[-2:]
    print(f'{parent} GRPO e2e: {float(seconds):.1f} s, peak RSS {int(rss_kb) / 1024:.0f} MB')
    probe = [json.loads(x) for x in probe_out.read_text().splitlines()]
    [run_dir] = sorted((tmp_path / 'out').glob('v*-*'))
    logged = [json.loads(x) for x in (run_dir / 'image_geometry.jsonl').read_text().splitlines()]
    return probe, logged, float(seconds), int(rss_kb) / 1024


def processor_geometry(processor, path):
    """What the real image processor makes of this file: (resized width, height, grid, tokens)."""
    from swift.template.vision_utils import load_image
    out = processor.image_processor(images=[load_image(path)], return_tensors='pt')
    t, gh, gw = out['image_grid_thw'][0].tolist()
    return gw * 14, gh * 14, [t, gh, gw], t * gh * gw // processor.image_processor.merge_size ** 2


@pytest.mark.parametrize('parent', ['glm4v', 'glm4_5v'])
def test_grpo_glm(tiny_model, tmp_path, parent):
    from transformers import AutoProcessor
    model_dir = tiny_model('glm4v')  # one architecture serves both templates
    probe, logged, _, _ = run_grpo(model_dir, tmp_path, parent, SIZES)
    processor = AutoProcessor.from_pretrained(model_dir)
    assert len(probe) == 2 * len(SIZES)
    assert {r['mode'] for r in logged} == {'rollout', 'train'} and len(logged) == 4 * len(SIZES)
    expected = {}
    for line in probe:
        path, geo = line['paths'][0], line['geometry'][0]
        expected[path] = processor_geometry(processor, path)
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        assert (geo['resized_width'], geo['resized_height'], geo['grid'], geo['num_tokens']) == expected[path]
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
        assert line['template'] == parent + '_geo'
    for rec in logged:
        assert rec['error'] is None and rec['mismatch'] is None
        assert (rec['resized_width'], rec['resized_height'], rec['grid'], rec['num_tokens']) == expected[rec['image']]
