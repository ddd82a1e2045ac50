"""A real tiny `swift rlhf --rlhf_type grpo` run on PaddleOCR-VL 1.5 (``paddle_ocr_1_5_geo``): the logged
geometry and the geometry the rewards got equal what transformers' PaddleOCR-VL processor makes of each
file, a row's ``chat_template_kwargs`` size limits included."""
import json
import os
import subprocess
import sys

from PIL import Image

from swift_ext.testing.images import make_dataset
from swift_ext.testing.tiny import run_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(ROOT, 'tests', 'e2e', 'plugins', 'probe.py')
SWIFT = os.path.join(os.path.dirname(sys.executable), 'swift')

# ms-swift 4.6.0's PaddleOCR1_5Template._post_encode calls `.to()` on `get_image_features(...).pooler_output`,
# which transformers 5.19 returns as a tuple (one tensor per image): the first training forward raises.
# Rollout, rewards and the training encodes all come before it, so all of their geometry is checked.
UPSTREAM_BUG = "in _post_encode\n    image_embeds = image_embeds.to(inputs_embeds.device, inputs_embeds.dtype)"
# Every size below PaddleOCR-VL-1.5's 112896-pixel floor is upscaled, so these stay ~150-200 tokens.
SIZES = (('tiny', 50, 60), ('landscape', 640, 480), ('wide', 1000, 40))
ROWS = {'landscape': {'chat_template_kwargs': {'shortest_edge': 1000, 'longest_edge': 50176}}}


def run_grpo(model_dir, tmp_path, parent, sizes, *, rows=None):
    """One GRPO step over ``sizes`` with geo_log; (probe lines, geo_log records, seconds, peak RSS MB, error).

    ``error`` is the run's last traceback, '' when it exited 0.

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
    error = text[text.rfind('Traceback'):][-9000:] if proc.returncode else ''
    seconds, rss_kb = stats.read_text().split()[-2:]
    print(f'{parent} GRPO e2e: {float(seconds):.1f} s, peak RSS {int(rss_kb) / 1024:.0f} MB')
    probe = [json.loads(x) for x in probe_out.read_text().splitlines()]
    [run_dir] = sorted((tmp_path / 'out').glob('v*-*'))
    logged = [json.loads(x) for x in (run_dir / 'image_geometry.jsonl').read_text().splitlines()]
    return probe, logged, float(seconds), int(rss_kb) / 1024, error


def processor_geometry(processor, path, row):
    """What the real image processor makes of this file under the row's limits, as ms-swift calls it."""
    from swift.template.vision_utils import load_image
    size = {k: v for k, v in (row or {}).items() if k in ('shortest_edge', 'longest_edge') and v}
    out = processor.image_processor(images=[load_image(path)], return_tensors='pt', **({'size': size} if size else {}))
    t, gh, gw = out['image_grid_thw'][0].tolist()
    return gw * 14, gh * 14, [t, gh, gw], t * gh * gw // 4


def test_grpo_paddle_ocr(tiny_model, tmp_path):
    from transformers import AutoProcessor
    model_dir = tiny_model('paddle_ocr_1_5')
    probe, logged, _, _, error = run_grpo(model_dir, tmp_path, 'paddle_ocr_1_5', SIZES, rows=ROWS)
    # Strict: once ms-swift / transformers fix the bug this fails, and the run must then exit 0.
    assert UPSTREAM_BUG in error and "AttributeError: 'tuple' object has no attribute 'to'" in error, error
    processor = AutoProcessor.from_pretrained(model_dir)
    assert len(probe) == 2 * len(SIZES)
    assert {r['mode'] for r in logged} == {'rollout', 'train'} and len(logged) == 4 * len(SIZES)
    expected = {}
    for line in probe:
        path, geo = line['paths'][0], line['geometry'][0]
        expected[path] = processor_geometry(processor, path, line['row'])
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        assert (geo['resized_width'], geo['resized_height'], geo['grid'], geo['num_tokens']) == expected[path]
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
    limited = [x for x in probe if 'landscape' in x['paths'][0]]
    assert limited[0]['row'] == ROWS['landscape']['chat_template_kwargs']
    assert limited[0]['geometry'][0]['resized_width'] == 252  # not the default 644
    for rec in logged:
        assert rec['error'] is None and rec['mismatch'] is None
        assert (rec['resized_width'], rec['resized_height'], rec['grid'], rec['num_tokens']) == expected[rec['image']]
