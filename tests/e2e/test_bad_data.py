"""Bad data inside real runs: named errors, ms-swift's own handling, never a new crash path.

What ms-swift 4.6 does with an image it cannot encode, and so what happens with `_geo`:
- `swift sft` (lazy tokenization, the default for multimodal models): the row is replaced by
  another random row with a warning; the run finishes.
- `swift rlhf --rlhf_type grpo`: the rollout encoder is strict, so the step stops the run.
  Parent and `_geo` template fail on the same rows; `_geo`'s error names the file and rule.
  `swift-ext plan DATASET` finds such rows (with row numbers) before a run.
Unusable ground truth is a reward matter: `None` for that sample, one warning per cause.
"""
import io
import json
import os
import struct
import zlib

import pytest
from PIL import Image

# Not the e2e fixture's train_args: these runs compare the parent template with `_geo`, on seed 3.
COMMON = ['--model_type', 'qwen2_5_vl', '--tuner_type', 'lora', '--torch_dtype', 'float32',
          '--report_to', 'none', '--check_model', 'false', '--save_strategy', 'no',
          '--seed', '3', '--dataloader_num_workers', '0']


def _bad_images(d):
    """name -> (path, the rule our error must state)."""
    Image.new('RGB', (64, 48), (200, 0, 0)).save(d / 'ok.png')
    (d / 'zero.png').write_bytes(b'')
    (d / 'junk.png').write_bytes(b'this is not an image')
    buf = io.BytesIO()
    Image.new('RGB', (300, 300), (0, 200, 0)).save(buf, 'PNG')
    (d / 'trunc.png').write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Image.new('RGB', (1, 300)).save(d / 'thin.png')
    ihdr = struct.pack('>IIBBBBB', 40000, 40000, 8, 2, 0, 0, 0)
    (d / 'bomb.png').write_bytes(b'\x89PNG\r\n\x1a\n' + struct.pack('>I', 13) + b'IHDR' + ihdr
                                 + struct.pack('>I', zlib.crc32(b'IHDR' + ihdr))
                                 + struct.pack('>I', 16) + b'IDAT' + b'\0' * 8)
    return {
        'missing': (str(d / 'missing.png'), 'image file does not exist'),
        'zero': (str(d / 'zero.png'), 'image file is empty'),
        'junk': (str(d / 'junk.png'), 'not a readable image'),
        'trunc': (str(d / 'trunc.png'), 'image could not be loaded (image file is truncated)'),
        'thin': (str(d / 'thin.png'), 'aspect ratio must be at most 200'),
        'bomb': (str(d / 'bomb.png'), 'decompression-bomb limit'),
    }


def _run(e2e, args):
    """`swift ARGS` with the common flags and the user's plugin file; the caller checks the exit code."""
    return e2e.swift(*args, *COMMON, '--external_plugins', e2e.PLUGIN, check=False)


def test_sft_skips_bad_rows_like_the_parent(e2e, tiny_model, tmp_path):
    bad = _bad_images(tmp_path)
    rows = [str(tmp_path / 'ok.png')] + [p for p, _ in bad.values()] + [str(tmp_path / 'ok.png')]
    data = tmp_path / 'sft.jsonl'
    data.write_text(''.join(json.dumps({
        'messages': [{'role': 'user', 'content': '<image>Where is the box?'},
                     {'role': 'assistant', 'content': '[{"bbox_2d": [1, 2, 3, 4]}]'}],
        'images': [p]}) + '\n' for p in rows))
    outputs = {}
    for template in ('qwen2_5_vl', 'qwen2_5_vl_geo'):
        log = ['--callbacks', 'geo_log'] if template.endswith('_geo') else []
        proc = _run(e2e, ['sft', '--model', tiny_model('qwen2_5_vl'), '--template', template,
                          '--dataset', str(data), '--per_device_train_batch_size', str(len(rows)),
                          '--max_steps', '1', '--output_dir', str(tmp_path / template), *log])
        assert proc.returncode == 0, e2e.traceback(proc.stdout + proc.stderr)
        outputs[template] = proc.stdout + proc.stderr
    geo_out = outputs['qwen2_5_vl_geo']
    for name, (path, rule) in bad.items():
        # Every bad row the loader touched failed with our message: file name and rule.
        assert f'{path}: ' in geo_out and rule in geo_out, name
    # The geometry log records each failure with the same message.
    [run_dir] = e2e.run_dirs(str(tmp_path / 'qwen2_5_vl_geo'))
    records = e2e.geometry_log(run_dir)
    errors = {r['image']: r['error'] for r in records if r.get('error')}
    for name, (path, rule) in bad.items():
        assert rule in errors[os.path.abspath(path)], name
    assert any(r.get('error') is None and r['resized_width'] == 56 for r in records)  # ok.png 64x48
    # Same handling as the parent: ms-swift replaced each failed row with another.
    replaced = 'another piece of data will be randomly selected'
    assert outputs['qwen2_5_vl'].count(replaced) > 0 and geo_out.count(replaced) > 0


@pytest.mark.parametrize('template', ['qwen2_5_vl', 'qwen2_5_vl_geo'])
def test_grpo_bad_image_stops_like_the_parent(e2e, tiny_model, tmp_path, template):
    bad = _bad_images(tmp_path)
    data = tmp_path / 'grpo.jsonl'
    data.write_text(json.dumps({'messages': [{'role': 'user', 'content': '<image>Box?'}],
                                'images': [bad['thin'][0]], 'solution': [0, 0, 1, 10]}) + '\n')
    proc = _run(e2e, ['rlhf', '--rlhf_type', 'grpo', '--model', tiny_model('qwen2_5_vl'),
                      '--template', template, '--dataset', str(data), '--reward_funcs', 'geo_iou',
                      '--num_generations', '2', '--per_device_train_batch_size', '2',
                      '--max_completion_length', '4', '--max_steps', '1',
                      '--output_dir', str(tmp_path / 'out')])
    assert proc.returncode != 0  # ms-swift's rollout encoder is strict for both templates
    if template.endswith('_geo'):
        assert f'GeometryError: {bad["thin"][0]}: aspect ratio must be at most 200, got 300.0' in proc.stderr


def test_grpo_bad_ground_truth_finishes(e2e, tiny_model, tmp_path):
    Image.new('RGB', (64, 48), (200, 0, 0)).save(tmp_path / 'ok.png')
    solutions = [[4, 4, 40, 40], None, 'not json', [-5, 0, 10, 10], [[0, 0, 1, 1]] * 500, '[1, 2, 3]']
    data = tmp_path / 'grpo.jsonl'
    with open(data, 'w') as f:
        for sol in solutions:
            row = {'messages': [{'role': 'user', 'content': '<image>Box?'}],
                   'images': [str(tmp_path / 'ok.png')]}
            if sol is not None:
                row['solution'] = sol
            f.write(json.dumps(row) + '\n')
    proc = _run(e2e, ['rlhf', '--rlhf_type', 'grpo', '--model', tiny_model('qwen2_5_vl'),
                      '--template', 'qwen2_5_vl_geo', '--dataset', str(data),
                      '--reward_funcs', 'geo_iou', 'geo_format', '--num_generations', '2',
                      '--per_device_train_batch_size', str(2 * len(solutions)),
                      '--max_completion_length', '4', '--max_steps', '1', '--logging_steps', '1',
                      '--output_dir', str(tmp_path / 'out')])
    assert proc.returncode == 0, e2e.traceback(proc.stdout + proc.stderr)
    out = proc.stdout + proc.stderr
    assert out.count('GeoIoU: ground truth') == 1  # one warning per cause, not per sample
    [run_dir] = e2e.run_dirs(str(tmp_path / 'out'))
    first = e2e.read_lines(os.path.join(run_dir, 'logging.jsonl'))[0]
    assert first['rewards/GeoIoU/mean'] == 0.0  # mean over the usable row only (no box: 0)
