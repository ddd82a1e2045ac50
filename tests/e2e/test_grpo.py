"""Real `swift rlhf --rlhf_type grpo` runs on tiny checkpoints: the rewards get each image's exact
geometry, checked against what qwen-vl-utils / ms-swift / transformers do to that file."""
import os

import pytest
from PIL import Image

from swift_ext.testing.images import DEMO_SIZES, make_dataset


def run_grpo(e2e, tiny_model, tmp_path, parent, *, sizes=DEMO_SIZES, row_max_pixels=None, **kwargs):
    """One GRPO step over every image of ``sizes``: (probe lines, process, run folder)."""
    data = make_dataset(str(tmp_path / 'data'), sizes=sizes, row_max_pixels=row_max_pixels)
    return e2e.grpo(tiny_model(parent), parent, data, tmp_path, batch=2 * len(sizes), **kwargs)


def qwen_expected(path, *, patch=14, swift_max_pixels=None, row=None, env_max_pixels=None):
    """What the real libraries make of this file, step by step as ms-swift calls them."""
    from qwen_vl_utils import fetch_image
    from swift.template.vision_utils import load_image, rescale_image
    img = load_image(path)
    if swift_max_pixels:
        img = rescale_image(img, swift_max_pixels)
    kwargs = dict(row or {})
    if env_max_pixels:
        kwargs.setdefault('max_pixels', env_max_pixels // (patch * 2) ** 2 * (patch * 2) ** 2)
    return fetch_image({'image': img, **kwargs}, image_patch_size=patch).size


def _check_qwen(lines, **expected_kwargs):
    assert len(lines) == 12  # 6 images x 2 generations
    assert {os.path.basename(line['paths'][0]) for line in lines} == {
        'tiny_50x60.png', 'landscape_640x480.png', 'portrait_300x500.png', 'wide_1000x40.png',
        'large_1280x960.png', 'square_448x448.png'}
    for line in lines:
        path, geo = line['paths'][0], line['geometry'][0]
        assert (geo['original_width'], geo['original_height']) == Image.open(path).size
        size = qwen_expected(path, row=line['row'], **expected_kwargs)
        assert (geo['resized_width'], geo['resized_height']) == size, path
        assert geo['num_tokens'] == size[0] * size[1] // 28 ** 2
        assert line['from_template'] == [True]  # PyTorch rollout: the template's own record


def test_grpo_qwen25_defaults_and_row_limits(e2e, tiny_model, tmp_path):
    # 'large' (1280x960) carries chat_template_kwargs max_pixels=200704 in its row.
    lines, _, _ = run_grpo(e2e, tiny_model, tmp_path, 'qwen2_5_vl', row_max_pixels={'large': 200704})
    _check_qwen(lines)
    large = [x for x in lines if 'large' in x['paths'][0]]
    assert large[0]['row'] == {'max_pixels': 200704}
    assert large[0]['geometry'][0]['resized_width'] == 504  # not the default 1288
    assert {x['coords'] for x in lines} == {'abs'}


def test_grpo_swift_max_pixels_flag(e2e, tiny_model, tmp_path):
    lines, _, _ = run_grpo(e2e, tiny_model, tmp_path, 'qwen2_5_vl', extra=['--max_pixels', '50176'])
    _check_qwen(lines, swift_max_pixels=50176)
    large = [x for x in lines if 'large' in x['paths'][0]][0]['geometry'][0]
    assert (large['original_width'], large['resized_width'], large['resized_height']) == (1280, 252, 196)


def test_grpo_max_pixels_environment(e2e, tiny_model, tmp_path):
    lines, _, _ = run_grpo(e2e, tiny_model, tmp_path, 'qwen2_5_vl', env={'MAX_PIXELS': '50176'})
    _check_qwen(lines, env_max_pixels=50176)
    large = [x for x in lines if 'large' in x['paths'][0]][0]['geometry'][0]
    assert (large['resized_width'], large['resized_height']) == (252, 168)


@pytest.mark.parametrize('parent', ['internvl_hf', 'interns1'])
def test_grpo_internvl_hf(e2e, tiny_model, tmp_path, parent):
    from transformers import AutoProcessor
    # Three shapes of 1, 3 and 4 tiles: a tiny InternVL's memory grows with tiles (256
    # tokens each, times a 151936-word vocabulary of logits), 16 GB for 6 samples of ~7 tiles.
    # interns1 (Intern-S1) is the same template class and processor with its own chat meta.
    sizes = [('square', 448, 448), ('two', 896, 448), ('tall', 300, 900)]
    lines, _, _ = run_grpo(e2e, tiny_model, tmp_path, parent, sizes=sizes)
    proc = AutoProcessor.from_pretrained(tiny_model(parent))
    assert len(lines) == 6
    for line in lines:
        path, geo = line['paths'][0], line['geometry'][0]
        tiles = int(proc.image_processor(images=[Image.open(path).convert('RGB')], crop_to_patches=True,
                                         return_tensors='pt')['num_patches'][0])
        assert geo['num_tiles'] == tiles, path
        assert geo['num_tokens'] == tiles * 256
        assert geo['resized_width'] == 448 * geo['tile_cols']
        assert line['coords'] == 'norm1000'
        assert line['from_template'] == [True]


@pytest.mark.parametrize('family,patch', [('qwen2_vl', 14), ('qwen3_vl', 16)])
def test_grpo_other_qwen_families(e2e, tiny_model, tmp_path, family, patch):
    # Qwen2-VL and Qwen3-VL (factor 32) end to end on two shapes; both write 0-1000 boxes.
    sizes = [('tiny', 50, 60), ('wide', 1000, 40)]
    lines, _, _ = run_grpo(e2e, tiny_model, tmp_path, family, sizes=sizes)
    assert len(lines) == 4
    for line in lines:
        path, geo = line['paths'][0], line['geometry'][0]
        size = qwen_expected(path, patch=patch)
        assert (geo['resized_width'], geo['resized_height']) == size, path
        assert geo['num_tokens'] == size[0] * size[1] // (patch * 2) ** 2
        assert line['coords'] == 'norm1000' and line['from_template'] == [True]
