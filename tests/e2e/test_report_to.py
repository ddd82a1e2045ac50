"""`vision/` metrics reach TensorBoard through ms-swift's own `--report_to`.

The geo_log callback puts its metrics into the trainer's logs, so every reporter the trainer
runs receives them. Checked end to end: a tiny SFT step with `--report_to tensorboard`, then
the event files read back with TensorBoard's own EventAccumulator, compared with the same
step's line in logging.jsonl.
"""
import glob
import json
import os
import subprocess
import sys

import pytest

from swift_ext.cli.plugin_path import plugin_path
from swift_ext.testing.images import make_dataset
from swift_ext.testing.tiny import run_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWIFT = os.path.join(os.path.dirname(sys.executable), 'swift')
SIZES = (('landscape', 320, 240), ('tiny', 50, 60))


def sft_rows(folder):
    """Grounding rows with the box as the assistant's answer."""
    path = make_dataset(folder, sizes=SIZES)
    rows = [json.loads(x) for x in open(path)]
    for row in rows:
        row['messages'].append({'role': 'assistant', 'content': json.dumps([{'bbox_2d': row['solution']}])})
    with open(path, 'w') as f:
        f.write(''.join(json.dumps(r) + '\n' for r in rows))
    return path


def test_vision_metrics_in_tensorboard_event_files(tiny_model, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / 'out'
    cmd = [SWIFT, 'sft', '--model', tiny_model('qwen2_5_vl'), '--model_type', run_flags('qwen2_5_vl')['model_type'],
           '--template', 'qwen2_5_vl_geo', '--external_plugins', plugin_path(), '--callbacks', 'geo_log',
           '--dataset', sft_rows(str(tmp_path / 'data')), '--max_steps', '1', '--per_device_train_batch_size', '2',
           '--tuner_type', 'lora', '--torch_dtype', 'float32', '--report_to', 'tensorboard',
           '--check_model', 'false', '--output_dir', str(out), '--logging_steps', '1', '--save_strategy', 'no',
           '--dataloader_num_workers', '0', '--seed', '1']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[text.rfind('Traceback'):][-4000:]
    [run_dir] = glob.glob(str(out / 'v*-*'))
    events = glob.glob(os.path.join(run_dir, '**', 'events.out.tfevents.*'), recursive=True)
    assert events, f'no TensorBoard event file under {run_dir}'
    step_line = next(json.loads(x) for x in open(os.path.join(run_dir, 'logging.jsonl')) if '"loss"' in x)
    logged = {k: v for k, v in step_line.items() if k.startswith('vision/')}
    assert {'vision/images_per_step', 'vision/visual_tokens_per_image_mean'} <= set(logged), sorted(step_line)

    scalars = {}
    for folder in {os.path.dirname(e) for e in events}:
        acc = EventAccumulator(folder)
        acc.Reload()
        for tag in acc.Tags()['scalars']:
            scalars[tag] = [e.value for e in acc.Scalars(tag)]
    # transformers' TensorBoard reporter prefixes training logs with 'train/'
    vision = {tag[len('train/'):]: values for tag, values in scalars.items() if tag.startswith('train/vision/')}
    assert set(vision) == set(logged), sorted(scalars)
    for name, value in logged.items():
        assert vision[name] == [pytest.approx(value, rel=1e-6)], name
    assert vision['vision/images_per_step'] == [2]
