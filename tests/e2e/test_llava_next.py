"""Real `swift rlhf --rlhf_type grpo` (and one `swift sft` step) on tiny LLaVA-NeXT and LLaVA-OneVision
checkpoints with `--callbacks geo_log`: every logged image and every reward's geometry equals what the
checkpoint's own processor does to that file (its token expansion, its views, where its canvas holds
the image). Runs under `/usr/bin/time -v`, so each run's peak RSS is printed (`pytest -s`)."""
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from PIL import Image

from swift_ext.testing.images import make_dataset
from swift_ext.testing.tiny import run_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(ROOT, 'tests', 'e2e', 'plugins', 'probe.py')
SWIFT = os.path.join(os.path.dirname(sys.executable), 'swift')
NEXT, OV = 'llava1_6_mistral_hf', 'llava_onevision_hf'
# Small files, kept to 1-3 tiles: a tiny model's memory is the visual tokens times the vocabulary.
SIZES = {NEXT: (('tiny', 50, 60), ('wide', 1000, 100)),  # 672x336 (2 tiles), 1008x336 (3 tiles)
         OV: (('tiny', 50, 60), ('wide', 400, 100))}  # 384x384 (1 tile), 768x384 (2 tiles)
GEOMETRY_FIELDS = ('original_width', 'original_height', 'resized_width', 'resized_height', 'canvas_width',
                   'canvas_height', 'pad_left', 'pad_top', 'tile_cols', 'tile_rows', 'num_tiles', 'num_tokens',
                   'global_width', 'global_height', 'thumbnail')


def run_swift(kind, model, parent, data, out, *extra, env=None):
    """Run `swift rlhf --rlhf_type grpo` or `swift sft` under /usr/bin/time -v; return (output, peak RSS MB)."""
    head = ['rlhf', '--rlhf_type', 'grpo'] if kind == 'grpo' else ['sft']
    flags = run_flags(parent)
    cmd = ['/usr/bin/time', '-v', SWIFT, *head, '--model', model, '--model_type', flags['model_type'],
           '--template', flags['template'], '--external_plugins', PROBE, '--callbacks', 'geo_log',
           '--dataset', data, '--tuner_type', 'lora', '--torch_dtype', 'float32', '--report_to', 'none',
           '--check_model', 'false', '--output_dir', out, '--logging_steps', '1', '--save_strategy', 'no',
           '--dataloader_num_workers', '0', '--max_steps', '1', '--seed', '1', *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, (proc.returncode, text[text.rfind('Traceback'):][-4000:])
    rss_mb = int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', text).group(1)) / 1024
    print(f'\n{kind} {parent}: peak RSS {rss_mb:.0f} MB, {re.search(r"Elapsed .*: (.*)", text).group(1)} wall')
    return text, rss_mb


def processor_geometry(processor, path):
    """The geometry of one file as the checkpoint's processor makes it, read from its outputs.

    Tokens: the processor's own `<image>` expansion. Views: pixel_values. Canvas: transformers'
    select_best_resolution. Content size and padding: where the tiles, laid back into the canvas,
    differ from the processor's zero padding.
    """
    from swift.template.vision_utils import load_image
    from transformers.image_processing_utils import select_best_resolution
    ip = processor.image_processor
    img = load_image(path)
    out = processor(images=[img], text='<image>', return_tensors='pt')
    views = out['pixel_values'][0]
    tile = views.shape[-1]
    canvas_h, canvas_w = select_best_resolution((img.height, img.width), ip.image_grid_pinpoints)
    rows, cols = canvas_h // tile, canvas_w // tile
    canvas = torch.zeros(3, canvas_h, canvas_w)
    for i, view in enumerate(views[1:]):
        r, c = divmod(i, cols)
        canvas[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = view
    pad = (-torch.tensor(ip.image_mean) / torch.tensor(ip.image_std)).view(3, 1, 1)
    ys, xs = torch.nonzero((canvas - pad).abs().amax(0) > 1e-4, as_tuple=True)
    return {'original_width': img.width, 'original_height': img.height,
            'resized_width': int(xs.max() - xs.min()) + 1, 'resized_height': int(ys.max() - ys.min()) + 1,
            'canvas_width': canvas_w, 'canvas_height': canvas_h, 'pad_left': int(xs.min()), 'pad_top': int(ys.min()),
            'tile_cols': cols, 'tile_rows': rows, 'num_tiles': views.shape[0],
            'num_tokens': int((out['input_ids'] == processor.image_token_id).sum()),
            'global_width': tile, 'global_height': tile, 'thumbnail': True}


def _fields(geo):
    return {k: geo[k] for k in GEOMETRY_FIELDS}


def _lines(path):
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


@pytest.mark.parametrize('parent', [NEXT, OV])
def test_grpo_logs_and_rewards_get_what_the_processor_does(tiny_model, tmp_path, parent):
    from transformers import AutoProcessor
    model = tiny_model(parent)
    sizes = SIZES[parent]
    data = make_dataset(str(tmp_path / 'data'), sizes=sizes)
    out = str(tmp_path / 'out')
    probe = tmp_path / 'probe.jsonl'
    run_swift('grpo', model, parent, data, out, '--reward_funcs', 'geo_iou', 'geo_format', 'geo_probe',
              '--num_generations', '2', '--per_device_train_batch_size', str(2 * len(sizes)),
              '--max_completion_length', '8', '--log_completions', 'true',
              # OneVision has no trained box output: name the convention, as a user must.
              env={'GEO_PROBE_OUT': str(probe), **({'SWIFT_EXT_COORDS': 'norm1'} if parent == OV else {})})
    processor = AutoProcessor.from_pretrained(model)
    [run_dir] = [os.path.join(out, d) for d in os.listdir(out) if d.startswith('v')]
    logged = _lines(os.path.join(run_dir, 'image_geometry.jsonl'))
    files = {os.path.basename(r['image']) for r in logged}
    assert files == {f'{n}_{w}x{h}.png' for n, w, h in sizes}
    expected = {os.path.basename(r['image']): processor_geometry(processor, r['image']) for r in logged}
    assert {(r['mode'], r['error']) for r in logged} == {('rollout', None), ('train', None)}
    for rec in logged:  # both the rollout and the training encode
        assert _fields(rec) == expected[os.path.basename(rec['image'])], rec['image']
        assert rec['mismatch'] is None and rec['template'] == parent + '_geo'
    assert len({n for n, _, _ in sizes}) == len({e['num_tiles'] for e in expected.values()})  # 2 tile counts

    # The rewards got the same geometry, from the template's record (PyTorch rollout).
    probed = _lines(probe)
    assert len(probed) == 2 * len(sizes)
    for line in probed:
        assert line['from_template'] == [True] and line['coords'] == 'norm1'
        assert _fields(line['geometry'][0]) == expected[os.path.basename(line['paths'][0])]
    completions = _lines(os.path.join(run_dir, 'completions.jsonl'))[0]
    for column in ('GeoIoU', 'GeoFormat'):  # scored (a random model writes no box: 0.0), never skipped
        assert all(isinstance(v, float) and v == v for v in completions[column]), completions[column]


def test_sft_one_step_onevision(tiny_model, tmp_path):
    from transformers import AutoProcessor
    model = tiny_model(OV)
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES[OV])
    rows = _lines(data)
    with open(data, 'w') as f:  # SFT rows: the box as the assistant's answer, 0-1 of the canvas style
        for row in rows:
            row['messages'].append({'role': 'assistant', 'content': json.dumps(row['solution'])})
            f.write(json.dumps(row) + '\n')
    out = str(tmp_path / 'out')
    run_swift('sft', model, OV, data, out, '--per_device_train_batch_size', '1', '--gradient_accumulation_steps',
              '1', env={'GEO_PROBE_OUT': str(tmp_path / 'probe.jsonl')})
    processor = AutoProcessor.from_pretrained(model)
    [run_dir] = [os.path.join(out, d) for d in os.listdir(out) if d.startswith('v')]
    logged = _lines(os.path.join(run_dir, 'image_geometry.jsonl'))
    assert logged and {r['mode'] for r in logged} == {'train'}
    for rec in logged:
        assert _fields(rec) == processor_geometry(processor, rec['image']), rec['image']
    assert Image.open(logged[0]['image']).size == (logged[0]['original_width'], logged[0]['original_height'])
