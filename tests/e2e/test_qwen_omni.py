"""Real `swift rlhf --rlhf_type grpo` steps on tiny Qwen2.5-Omni / Qwen3-Omni thinkers: the geometry the
rewards receive and the `geo_log` records equal what ms-swift's template makes of each file, i.e.
`load_image`, then `qwen_omni_utils.fetch_image` (patch 14 for Qwen2.5-Omni, the processor's 16 for Qwen3-Omni)
under the limits the Omni loader set on `qwen_omni_utils.vision_process`."""
import os

import pytest
from PIL import Image

from swift_ext.testing.images import make_dataset

# Small on purpose (logits over the 151,936-word vocabulary dominate memory): 'tiny' is enlarged to the
# minimum, 'landscape' shrunk by MAX_PIXELS, 'wide' (16:1) has a side under one 28/32-pixel unit.
SIZES = (('tiny', 50, 60), ('landscape', 320, 240), ('wide', 320, 20))
# The Omni loaders turn it into IMAGE_MAX_TOKEN_NUM on qwen_omni_utils (with patch 14 / 16 each).
MAX_PIXELS = 50176
PATCH = {'qwen2_5_omni': 14, 'qwen3_omni': 16}
COORDS = {'qwen2_5_omni': 'abs', 'qwen3_omni': 'norm1000'}


def omni_expected(path, patch):
    """(width, height) ms-swift's Omni template hands the processor for this file, step by step as it calls them."""
    from qwen_omni_utils import fetch_image
    from swift.template.vision_utils import load_image
    factor = patch * 2
    max_pixels = MAX_PIXELS // factor ** 2 * factor ** 2  # compat_qwen_vl_utils: pixels -> whole tokens
    # Qwen2.5-Omni's template passes no image_patch_size (fetch_image's default, 14); Qwen3-Omni passes 16.
    kwargs = {'image_patch_size': patch} if patch != 14 else {}
    return fetch_image({'image': load_image(path), 'max_pixels': max_pixels}, **kwargs).size


@pytest.mark.parametrize('parent', list(PATCH))
def test_grpo_qwen_omni(e2e, tiny_model, tmp_path, parent):
    patch, factor = PATCH[parent], PATCH[parent] * 2
    data = make_dataset(str(tmp_path / 'data'), sizes=SIZES)
    lines, proc, run_dir = e2e.grpo(tiny_model(parent), parent, data, tmp_path, batch=2 * len(SIZES),
                                    env={'MAX_PIXELS': str(MAX_PIXELS)})
    print(f'\n{parent} GRPO step: {e2e.usage(proc)}')

    files = {f'{n}_{w}x{h}.png' for n, w, h in SIZES}
    expected = {}
    assert len(lines) == 2 * len(SIZES)  # each image x 2 generations
    assert {os.path.basename(line['paths'][0]) for line in lines} == files
    for line in lines:  # what the rewards received
        path, geo = line['paths'][0], line['geometry'][0]
        size = expected.setdefault(path, omni_expected(path, patch))
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size, path
        assert (geo['resized_width'], geo['resized_height']) == size, path
        assert geo['num_tokens'] == size[0] * size[1] // factor ** 2, path
        assert geo['grid'] == [1, size[1] // patch, size[0] // patch], path
        assert line['from_template'] == [True]  # PyTorch rollout: the template's own record
        assert line['coords'] == COORDS[parent] and line['template'] == parent + '_geo'
    landscape = [size for p, size in expected.items() if os.path.basename(p) == 'landscape_320x240.png']
    assert landscape[0][0] * landscape[0][1] <= MAX_PIXELS < 320 * 240  # the limit did bite

    # geo_log: a rollout and a train record per sample, each what fetch_image did to its file.
    records = e2e.read_lines(os.path.join(run_dir, 'image_geometry.jsonl'))
    assert sorted(r['mode'] for r in records) == ['rollout'] * len(lines) + ['train'] * len(lines)
    assert {os.path.basename(r['image']) for r in records} == files
    for r in records:
        assert r['error'] is None and r['mismatch'] is None and r['template'] == parent + '_geo', r
        size = omni_expected(r['image'], patch)
        assert (r['resized_width'], r['resized_height']) == size, r
        assert r['num_tokens'] == size[0] * size[1] // factor ** 2, r
