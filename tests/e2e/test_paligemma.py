"""Real runs on a tiny PaliGemma: the geometry the rewards receive and the `geo_log` records equal what the SigLIP
image processor makes of each file.

GRPO in ms-swift 4.6.0 stops after the first rollout's rewards: its rollout log re-encodes each prompt alone in
train mode, and PaliGemmaTemplate._encode reads past the end of labels that are all -100 (pinned in
test_family_paligemma). The rollout, its records and the rewards run first and are checked; SFT trains, and
its records are checked step by step.
"""
import os

import pytest
from PIL import Image

from swift_ext.testing.images import make_dataset

SIZES = [('tiny', 50, 60), ('wide', 1000, 40), ('big', 2000, 300), ('portrait', 300, 500)]
UPSTREAM_BUG = ('self._apply_chat_template_to_messages_list(valid_messages)',
                "lambda idx: encoded['labels'][idx] == -100", 'IndexError: list index out of range')


def processor_geometry(model_dir, path):
    """(resized width, height, tokens) the checkpoint's own processor gives the file."""
    from swift.template.vision_utils import load_image
    from transformers import AutoProcessor
    proc = AutoProcessor.from_pretrained(model_dir)
    height, width = proc.image_processor([load_image(path)], return_tensors='pt')['pixel_values'].shape[-2:]
    return int(width), int(height), proc.image_seq_length


def _check(records, expected, modes):
    assert sorted(r['mode'] for r in records) == modes
    for r in records:
        assert r['error'] is None and r['mismatch'] is None and r['template'] == 'paligemma_geo', r
        assert (r['resized_width'], r['resized_height'], r['num_tokens']) == expected(r['image']) == (224, 224, 256)
        assert (r['original_width'], r['original_height']) == Image.open(r['image']).size


def test_grpo_paligemma_until_the_upstream_failure(e2e, tiny_model, tmp_path):
    model = tiny_model('paligemma')
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    lines, proc, run_dir = e2e.grpo(model, 'paligemma', data, tmp_path, batch=8, check=False)
    print(f'\nE2E paligemma grpo: rc {proc.returncode}, {e2e.usage(proc)}')
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 or all(s in out for s in UPSTREAM_BUG), e2e.traceback(out)
    expected = {}
    geometry = lambda path: expected.setdefault(path, processor_geometry(model, path))  # noqa: E731
    assert len(lines) == 2 * len(SIZES)  # every reward call: each image x 2 generations
    for line in lines:
        path, geo = line['paths'][0], line['geometry'][0]
        assert (geo['resized_width'], geo['resized_height'], geo['num_tokens']) == geometry(path)
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        assert line['from_template'] == [True] and line['coords'] == 'bins1024'
    # The rollout encodes, then the training encodes of the same step, were all recorded before the failure.
    records = e2e.geometry_log(run_dir)
    _check(records, geometry, ['rollout'] * 8 + ['train'] * 8)
    if proc.returncode != 0:
        assert {r['step'] for r in records if r['mode'] == 'train'} == {None}  # no step trained
        pytest.xfail('ms-swift 4.6.0 PaliGemmaTemplate cannot encode a prompt alone in train mode (GRPO rollout log)')


def test_sft_paligemma(e2e, tiny_model, tmp_path):
    model = tiny_model('paligemma')
    # Each answer names its image: PaliGemma's 256 image tokens are the same for every size, so rows with the
    # same text would be the same row to the recorder (their lines could not tell which step took them).
    data = e2e.dataset(tmp_path / 'data', SIZES,
                       answer=lambda row: '<loc0100><loc0200><loc0500><loc0600> ' + os.path.basename(row['images'][0]))
    out = str(tmp_path / 'out')
    args = e2e.train_args(model, 'paligemma', data, out, steps=2,
                          extra=['--per_device_train_batch_size', '2', '--gradient_accumulation_steps', '1'])
    proc = e2e.swift('sft', *args, env={'GEO_PROBE_OUT': str(tmp_path / 'probe.jsonl')})
    print(f'\nE2E paligemma sft: {e2e.usage(proc)}')
    [run_dir] = e2e.run_dirs(out)
    records = e2e.geometry_log(run_dir)
    _check(records, lambda path: processor_geometry(model, path), ['train'] * len(SIZES))
    assert sorted(r['step'] for r in records) == [1, 1, 2, 2]
