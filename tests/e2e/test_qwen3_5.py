"""A real `swift rlhf --rlhf_type grpo` step on a tiny Qwen3.5 (Qwen3_5ForConditionalGeneration, Gated-DeltaNet
on transformers' PyTorch fallbacks): the logged geometry and what the rewards received equal what ms-swift's
loader, rescale and qwen-vl-utils' fetch_image (patch 16) make of each file."""
import os

import pytest
from PIL import Image

from swift_ext.testing.images import make_dataset

# Small on purpose: logits over the 248,320-word vocabulary dominate memory (640x480 in a batch of 6: 8 GB).
SIZES = (('tiny', 50, 60), ('landscape', 320, 240), ('wide', 1000, 40))


def _expected(path, env):
    """The size ms-swift's template gives this file: load, then fetch_image at patch 16."""
    from qwen_vl_utils import fetch_image
    from swift.template.vision_utils import load_image
    kwargs = {}
    if 'MAX_PIXELS' in env:  # the loader's compat_qwen_vl_utils(16): tokens = MAX_PIXELS // 32**2
        kwargs['max_pixels'] = int(env['MAX_PIXELS']) // 32 ** 2 * 32 ** 2
    return fetch_image({'image': load_image(path), **kwargs}, image_patch_size=16).size


@pytest.mark.parametrize('parent,env', [('qwen3_5', {}), ('qwen3_8', {'MAX_PIXELS': '50176'})])
def test_grpo_qwen3_5(e2e, tiny_model, tmp_path, parent, env):
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    probe, proc, run_dir = e2e.grpo(tiny_model(parent), parent, data, tmp_path, batch=2 * len(SIZES), env=env)
    print(f'\n{parent} GRPO step: {e2e.usage(proc)}')
    assert len(probe) == 2 * len(SIZES)
    files = {f'{n}_{w}x{h}.png' for n, w, h in SIZES}
    assert {os.path.basename(line['paths'][0]) for line in probe} == files
    for line in probe:  # what the rewards received
        path, geo = line['paths'][0], line['geometry'][0]
        size = _expected(path, env)
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        assert (geo['resized_width'], geo['resized_height']) == size, path
        assert geo['num_tokens'] == size[0] * size[1] // 32 ** 2
        assert geo['grid'] == [1, size[1] // 16, size[0] // 16]
        assert line['coords'] == 'norm1000' and line['template'] == parent + '_geo'
        assert line['from_template'] == [True]
    # what geo_log wrote: one record per image per encode (rollout and train), all as the processor gives
    logged = e2e.geometry_log(run_dir)
    assert {r['mode'] for r in logged} == {'rollout', 'train'}
    assert {os.path.basename(r['image']) for r in logged} == files
    for record in logged:
        size = _expected(record['image'], env)
        assert (record['resized_width'], record['resized_height']) == size, record['image']
        assert record['num_tokens'] == size[0] * size[1] // 32 ** 2
