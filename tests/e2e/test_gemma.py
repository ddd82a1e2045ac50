"""Real `swift rlhf --rlhf_type grpo` runs on tiny Gemma 3 and Gemma 4 checkpoints: the geometry the
rewards receive and the `geo_log` records equal what the Gemma image processors make of each file."""
import os

import pytest
from PIL import Image

from swift_ext.testing.images import make_dataset

# Gemma 4: 2000x300 is shrunk to its 280-token budget, 50x60 enlarged, 1000x20 hits the one-row floor.
SIZES = [('tiny', 50, 60), ('wide', 1000, 20), ('big', 2000, 300), ('portrait', 300, 500)]
# ms-swift 4.6.0 replaces Gemma4Model.forward with a copy written for transformers 5.6.2; in 5.19
# `get_image_features(...).pooler_output` is a tuple (one tensor per image), so the first forward with
# pixels fails. Rollout, rewards and both encodes have run (and been logged) by then.
GEMMA4_UPSTREAM_BUG = ('image_features = image_features.to(inputs_embeds.device, inputs_embeds.dtype)',
                       "AttributeError: 'tuple' object has no attribute 'to'")


def processor_geometry(model_dir, parent, path):
    """(resized width, height, tokens) the checkpoint's own image processor gives the file."""
    from swift.template.vision_utils import load_image
    from transformers import AutoProcessor
    proc = AutoProcessor.from_pretrained(model_dir)
    out = proc.image_processor([load_image(path)], return_tensors='pt')
    if parent == 'gemma3_vision':
        height, width = out['pixel_values'].shape[-2:]
        return int(width), int(height), proc.image_seq_length
    cols, rows = (int(v) + 1 for v in out['image_position_ids'][0].amax(dim=0))
    patch = proc.image_processor.patch_size
    return cols * patch, rows * patch, int(out['num_soft_tokens_per_image'][0])


# Gemma 3: two steps of 2 prompts, as 8 images of 64 x 64 patches at once (eager attention) take 2.4 GB.
# Gemma 4: one step of all 4, so the records of every image are written before the known failure.
@pytest.mark.parametrize('parent,batch', [('gemma3_vision', 4), ('gemma4', 8)])
def test_grpo_gemma_family(e2e, tiny_model, tmp_path, parent, batch):
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    # Each image once: 2 completions an image, ``batch`` completions a step.
    lines, proc, run_dir = e2e.grpo(tiny_model(parent), parent, data, tmp_path, batch=batch,
                                    steps=e2e.GENERATIONS * len(SIZES) // batch, check=False)
    print(f'\nE2E {parent}: rc {proc.returncode}, {e2e.usage(proc)}')
    out = proc.stdout + proc.stderr
    known_failure = parent == 'gemma4' and proc.returncode != 0 and all(s in out for s in GEMMA4_UPSTREAM_BUG)
    assert proc.returncode == 0 or known_failure, e2e.traceback(out)
    records = e2e.geometry_log(run_dir)
    assert len(lines) == 2 * len(SIZES)  # each image x 2 generations
    expected = {}
    for line in lines:
        path, geo = line['paths'][0], line['geometry'][0]
        if path not in expected:
            expected[path] = processor_geometry(tiny_model(parent), parent, path)
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        assert (geo['resized_width'], geo['resized_height'], geo['num_tokens']) == expected[path], path
        assert geo['num_tiles'] == 1
        assert line['from_template'] == [True] and line['coords'] == 'norm1000'
    assert sorted(r['mode'] for r in records) == ['rollout'] * 8 + ['train'] * 8
    for r in records:
        assert r['error'] is None and r['mismatch'] is None and r['template'] == parent + '_geo', r
        assert (r['resized_width'], r['resized_height'], r['num_tokens']) == expected[r['image']], r
    if parent == 'gemma4':
        assert {os.path.basename(p): g[:2] for p, g in expected.items()}['big_2000x300.png'] == (2064, 288)
    if known_failure:  # everything above ran on the real run's logs; only the training forward failed
        pytest.xfail('ms-swift 4.6.0 Gemma 4 forward patch vs transformers 5.19: ' + GEMMA4_UPSTREAM_BUG[1])
