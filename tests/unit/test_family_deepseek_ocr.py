"""DeepSeek-OCR / OCR-2 (remote code): ms-swift's own token arithmetic, the tiling pinned to the published
``dynamic_preprocess`` (tests/data/deepseek_ocr, 9398 sizes) and OCR-2's to transformers' native
``deepseek_ocr2`` image processor."""
import json
import math
import random
from pathlib import Path

import pytest

from swift_ext.families import describe, family_of
from swift_ext.families.internvl import closest_grid, swift_tile_grids

REFERENCE = json.loads((Path(__file__).parents[1] / 'data' / 'deepseek_ocr' / 'reference.json').read_text())
FAMILY, _ = family_of('deepseek_ocr')
V1, V2 = FAMILY.default_settings('deepseek_ocr'), FAMILY.default_settings('deepseek_ocr2')


@pytest.mark.parametrize('key', ['v1', 'v2', 'v1_grid', 'v2_grid'])
def test_tiles_equal_the_published_dynamic_preprocess(key):
    settings = V1 if key.startswith('v1') else V2
    grids = swift_tile_grids(settings.min_num, settings.max_num)
    mismatches = [r for r in REFERENCE[key]
                  if list(closest_grid(width=r[0], height=r[1], grids=grids, image_size=settings.tile_size)) != r[2:]]
    assert len(REFERENCE[key]) >= 600 and mismatches == []


def test_v2_tiles_equal_transformers_native_deepseek_ocr2():
    from transformers.models.deepseek_ocr2.image_processing_deepseek_ocr2 import (
        DeepseekOcr2ImageProcessor,
        get_optimal_tiled_canvas,
    )
    processor = DeepseekOcr2ImageProcessor()
    assert (processor.min_patches, processor.max_patches, processor.tile_size) == (V2.min_num, V2.max_num, 768)
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
