"""The core subset `scripts/compat.sh VERSION` runs against another ms-swift release.

Not collected by the normal suite (the file name does not start with `test_`); compat.sh
names it explicitly. Parity is checked for every parent template that has a tiny checkpoint.
A parent this ms-swift lacks (template or model type), or whose model class this transformers
lacks, is skipped with that reason (compat.sh prints the skips), never counted as passed.
"""
import glob
import json
import os
import subprocess
import sys
from importlib import metadata

import pytest
import torch

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.cli.plugin_path import plugin_path
from swift_ext.families.qwen import qwen_geometry
from swift_ext.testing.images import make_dataset
from swift_ext.testing.tiny import parents, run_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWIFT = os.path.join(os.path.dirname(sys.executable), 'swift')
SIZES = (('landscape', 320, 240), ('tiny', 50, 60))


@pytest.fixture(scope='module')
def built(tiny_model):
    """``parent -> (processor, model dir)``; skips with the reason when this stack lacks it."""
    from swift.model import get_processor
    from swift.template import TEMPLATE_MAPPING
    cache = {}

    def get(parent):
        if parent not in TEMPLATE_MAPPING:
            pytest.skip(f'ms-swift {metadata.version("ms-swift")} has no template {parent!r}')
        if parent not in cache:
            try:
                path = tiny_model(parent)
            except (ImportError, AttributeError) as exc:  # model class missing from transformers
                pytest.skip(f'transformers {metadata.version("transformers")} cannot build {parent}: {exc}')
            model_type = run_flags(parent)['model_type']
            try:
                cache[parent] = get_processor(path, model_type=model_type)
            except ValueError as exc:
                if model_type not in str(exc):
                    raise
                pytest.skip(f'ms-swift {metadata.version("ms-swift")} has no model type {model_type!r}')
        return cache[parent]
    return get


def _encode(processor, name, sample):
    from swift.template import get_template
    tpl = get_template(processor, template_type=name)
    tpl.set_mode('train')
    return tpl.encode(sample)


@pytest.mark.parametrize('parent', parents())
def test_encode_parity(built, sample_images, parent):
    # The _geo template encodes exactly like its parent: same keys, same tensors, same ids.
    proc = built(parent)
    for names in (['landscape'], ['tiny', 'portrait']):
        tags = '<image>' * len(names)
        sample = {'messages': [{'role': 'user', 'content': f'{tags}Where is the red box?'},
                               {'role': 'assistant', 'content': '[10, 20, 30, 40]'}],
                  'images': [sample_images[n] for n in names]}
        a, b = _encode(proc, parent, sample), _encode(proc, parent + '_geo', sample)
        assert sorted(a) == sorted(b)
        for key in a:
            same = torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key]
            assert same, (parent, key)


def _run(kind, tiny_model, tmp_path, *extra):
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    if kind == 'sft':  # the ground-truth box as the assistant's answer
        rows = [json.loads(x) for x in open(data)]
        for row in rows:
            row['messages'].append({'role': 'assistant', 'content': json.dumps([{'bbox_2d': row['solution']}])})
        with open(data, 'w') as f:
            f.write(''.join(json.dumps(r) + '\n' for r in rows))
    head = [SWIFT, 'rlhf', '--rlhf_type', 'grpo'] if kind == 'grpo' else [SWIFT, 'sft']
    cmd = [*head, '--model', tiny_model('qwen2_5_vl'), '--model_type', 'qwen2_5_vl',
           '--template', 'qwen2_5_vl_geo', '--external_plugins', plugin_path(),
           '--callbacks', 'geo_log', '--dataset', data, '--max_steps', '1', '--tuner_type', 'lora',
           '--torch_dtype', 'float32', '--report_to', 'none', '--check_model', 'false',
           '--output_dir', str(tmp_path / 'out'), '--logging_steps', '1', '--save_strategy', 'no',
           '--dataloader_num_workers', '0', '--seed', '1', *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[text.rfind('Traceback'):][-4000:]
    [run_dir] = glob.glob(str(tmp_path / 'out' / 'v*-*'))
    lines = [json.loads(x) for x in open(os.path.join(run_dir, 'image_geometry.jsonl'))]
    metrics = [json.loads(x) for x in open(os.path.join(run_dir, 'logging.jsonl'))]
    return lines, metrics


def test_grpo_with_the_packaged_plugin(tiny_model, tmp_path):
    # Rewards and callback through `--external_plugins "$(swift-ext plugin-path)"`.
    # 4 completions a step: both prompts (each image once) x 2 generations
    lines, metrics = _run('grpo', tiny_model, tmp_path, '--reward_funcs', 'geo_iou', 'geo_format',
                          '--num_generations', '2', '--max_completion_length', '8',
                          '--per_device_train_batch_size', '4')
    assert {(r['original_width'], r['original_height']) for r in lines} == {(w, h) for _, w, h in SIZES}
    assert {r['mode'] for r in lines} == {'rollout', 'train'}
    step = metrics[0]
    assert 'rewards/GeoIoU/mean' in step and 'rewards/GeoFormat/mean' in step, sorted(step)
    assert step['vision/images_per_step'] > 0


def test_sft_with_the_packaged_plugin(tiny_model, tmp_path):
    lines, metrics = _run('sft', tiny_model, tmp_path, '--per_device_train_batch_size', '2')
    assert {r['mode'] for r in lines} == {'train'}
    expected = {qwen_geometry(width=w, height=h) for _, w, h in SIZES}
    assert {(r['resized_width'], r['resized_height']) for r in lines} == {
        (g.resized_width, g.resized_height) for g in expected}
    assert metrics[0]['vision/images_per_step'] == 2
