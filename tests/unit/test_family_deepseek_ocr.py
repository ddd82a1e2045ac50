"""DeepSeek-OCR / OCR-2 (remote code): ms-swift's own token arithmetic, the tiling pinned to the published
``dynamic_preprocess`` (tests/data/deepseek_ocr, 9398 sizes) and OCR-2's to transformers' native
``deepseek_ocr2`` image processor."""
import copy
import json
import math
import random
from pathlib import Path

import pytest

from swift_ext.families import describe, family_of
from swift_ext.families.internvl import closest_grid, swift_tile_grids
from swift_ext.testing import contract

REFERENCE = json.loads((Path(__file__).parents[1] / 'data' / 'deepseek_ocr' / 'reference.json').read_text())
FAMILY, _ = family_of('deepseek_ocr')
V1, V2 = FAMILY.default_settings('deepseek_ocr'), FAMILY.default_settings('deepseek_ocr2')


@pytest.mark.parametrize('key', ['v1', 'v2', 'v1_grid', 'v2_grid'])
def test_tiles_equal_the_published_dynamic_preprocess(key):
    settings = V1 if key.startswith('v1') else V2
    grids = swift_tile_grids(settings.min_crops, settings.max_crops)
    mismatches = [r for r in REFERENCE[key]
                  if list(closest_grid(width=r[0], height=r[1], grids=grids, image_size=settings.tile_size)) != r[2:]]
    assert len(REFERENCE[key]) >= 600 and mismatches == []


def test_v2_tiles_equal_transformers_native_deepseek_ocr2():
    from transformers.models.deepseek_ocr2.image_processing_deepseek_ocr2 import (
        DeepseekOcr2ImageProcessor,
        get_optimal_tiled_canvas,
    )
    processor = DeepseekOcr2ImageProcessor()
    assert (processor.min_patches, processor.max_patches, processor.tile_size) == (V2.min_crops, V2.max_crops, 768)
    rng, mismatches, cases = random.Random(3), [], 0
    while cases < 2000:
        width = int(math.exp(rng.uniform(0, math.log(9000)))) + 1
        height = int(math.exp(rng.uniform(0, math.log(9000)))) + 1
        geo, _ = V2.predict(width=width, height=height)
        tiles = geo.num_tiles - 1 if geo.tile_cols else 0
        if tiles + 1 != processor.get_number_of_image_patches(height, width):
            mismatches.append((width, height))
        if max(width, height) > 768:
            cases += 1
            if (geo.tile_cols, geo.tile_rows) != tuple(get_optimal_tiled_canvas((height, width), (768, 768), 2, 6)):
                mismatches.append((width, height))
    assert mismatches == []


def test_token_counts_follow_ms_swift():
    # v1: newline per row; v2: none. Global 1024 -> q 16; tiles 640 -> q 10 (v1), 768 -> q 12 (v2).
    small, _ = V1.predict(width=600, height=400)
    assert small.num_tokens == 17 * 16 + 1 and small.num_tiles == 1
    big, _ = V1.predict(width=2000, height=1000)
    # 2:1 ties 2x1 and 4x2; InternVL's rule moves to 4x2 while its tiles cover under twice the image.
    assert (big.tile_cols, big.tile_rows, big.num_tiles) == (4, 2, 9)
    assert big.num_tokens == 17 * 16 + 1 + (10 * 4 + 1) * (10 * 2)
    big2, _ = V2.predict(width=1200, height=600)
    assert (big2.tile_cols, big2.tile_rows) == (2, 1)
    assert big2.num_tokens == 16 * 16 + 1 + (12 * 2) * (12 * 1)


def test_env_crop_mode_and_image_size():
    off = FAMILY.settings_for('deepseek_ocr', env={'CROP_MODE': 'false', 'IMAGE_SIZE': '1024'})
    geo, _ = off.predict(width=2000, height=1000)
    assert (geo.resized_width, geo.resized_height, geo.num_tokens) == (1024, 512, 17 * 16 + 1)
    squash, _ = FAMILY.settings_for('deepseek_ocr', env={'CROP_MODE': '0'}).predict(width=2000, height=1000)
    assert (squash.resized_width, squash.resized_height, squash.num_tokens) == (640, 640, 11 * 10 + 1)
    with pytest.raises(ValueError, match='CROP_MODE'):
        FAMILY.settings_for('deepseek_ocr', env={'CROP_MODE': 'maybe'})


def test_specs():
    for name in ('deepseek_ocr_geo', 'deepseek_ocr2_geo'):
        row = describe(name)[0]
        assert (row['verification'], row['coords'], row['box_styles'][0]) == ('published_code', 'norm999',
                                                                               'deepseek_det')


# --- ms-swift's own DeepseekOCR arithmetic, through real encodes of its template class ----------------------
# The template loads two functions from the checkpoint's remote code: BasicImageTransform (ToTensor +
# Normalize) and dynamic_preprocess. Here transformers' native DeepSeek-OCR-2 tiling stands in for the
# latter (identical grids to the published function on every size of the reference table, for both
# versions' parameters: test above and below); everything else is ms-swift's real code.
def _transform_cls():
    from torchvision import transforms

    class BasicImageTransform:
        def __init__(self, mean, std, normalize):
            self.mean = mean
            self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])

        def __call__(self, image):
            return self.transform(image)
    return BasicImageTransform


def _native_dynamic_preprocess(max_num, tile):
    from transformers.models.deepseek_ocr2.image_processing_deepseek_ocr2 import get_optimal_tiled_canvas

    def dynamic_preprocess(image):
        cols, rows = get_optimal_tiled_canvas((image.height, image.width), (tile, tile), 2, max_num)
        big = image.resize((cols * tile, rows * tile))
        return [big.crop((c * tile, r * tile, (c + 1) * tile, (r + 1) * tile))
                for r in range(rows) for c in range(cols)], (cols, rows)
    return dynamic_preprocess


def test_native_tiling_equals_the_published_one_for_both_versions():
    from transformers.models.deepseek_ocr2.image_processing_deepseek_ocr2 import get_optimal_tiled_canvas
    for key, (max_num, tile) in {'v1_grid': (9, 640), 'v2_grid': (6, 768)}.items():
        assert [r for r in REFERENCE[key]
                if list(get_optimal_tiled_canvas((r[1], r[0]), (tile, tile), 2, max_num)) != r[2:]] == []


@pytest.mark.parametrize('parent,max_num,tile', [('deepseek_ocr', 9, 640), ('deepseek_ocr2', 6, 768)])
def test_encode_identical_to_parent_and_geometry_is_the_encode(tiny_model, tmp_path, parent, max_num, tile):
    from PIL import Image
    from swift.model import get_processor
    from swift.template import get_template

    import swift_ext.plugin  # noqa: F401  (registers the templates)
    from swift_ext.families.encoded import token_runs
    from swift_ext.images import image_key
    from swift_ext.store import STORE
    from swift_ext.testing.tiny import run_flags

    # A tokenizer with '<image>' as one token (the tiny LLaVA-NeXT one): DeepSeek-OCR's own needs remote code.
    proc = get_processor(tiny_model('llava1_6_mistral_hf'), model_type=run_flags('llava1_6_mistral_hf')['model_type'])
    tok = proc.tokenizer
    tok.model_info, tok.model_meta = proc.model_info, proc.model_meta
    templates = []
    for name in (parent, parent + '_geo'):
        tpl = get_template(tok, template_type=name)
        tpl.set_mode('train')
        tpl._BasicImageTransform, tpl._dynamic_preprocess = _transform_cls(), _native_dynamic_preprocess(max_num, tile)
        templates.append(tpl)
    sizes = [(2000, 1000), (300, 500), (900, 3000)]
    paths = []
    for i, size in enumerate(sizes):
        paths.append(str(tmp_path / f'{parent}{i}.png'))
        Image.new('RGB', size, (20 * i, 90, 9)).save(paths[-1])
    for chosen in ([paths[0]], paths[1:]):
        sample = {'messages': [{'role': 'user', 'content': '<image>' * len(chosen) + 'Read.'},
                               {'role': 'assistant', 'content': 'ok'}], 'images': list(chosen)}
        a, b = templates[0].encode(copy.deepcopy(sample)), templates[1].encode(copy.deepcopy(sample))
        contract.assert_same_encode(a, b)
        runs = token_runs(b['input_ids'], tok.convert_tokens_to_ids('<image>'))
        crops = b['images_spatial_crop'].tolist()
        templates[1].data_collator([b])  # the recorder's trigger (it takes the batch's tensors)
        for path, tokens, (cols, rows) in zip(chosen, runs, crops, strict=True):
            geo = STORE.get(image_key(path), (None, None), parent + '_geo')
            predicted, _ = FAMILY.default_settings(parent).predict(width=Image.open(path).width,
                                                                   height=Image.open(path).height)
            assert geo == predicted and geo.num_tokens == tokens
            assert (geo.tile_cols or 1, geo.tile_rows or 1) == (cols, rows)
