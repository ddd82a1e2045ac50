"""InternVL tiling (swift_ext.families.internvl, internvl_hf) against ms-swift's _dynamic_preprocess and
transformers' GotOcr2 processor. Moved here from test_geometry.py with the arithmetic."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swift_ext.families.internvl import internvl_geometry
from swift_ext.families.internvl_hf import hf_tile_grids as hf_tile_ratios
from swift_ext.geometry import Clamp
from swift_ext.settings import default_settings


@settings(max_examples=2000, deadline=None)
@given(width=st.integers(1, 8000), height=st.integers(1, 8000), max_num=st.integers(1, 40))
def test_internvl_tiles_match_ms_swift(width, height, max_num):
    # ms-swift's own _dynamic_preprocess on a real image gives the same tile count.
    from swift.template.vision_utils import _find_closest_aspect_ratio
    geo = internvl_geometry(width=width, height=height, max_num=max_num)
    ratios = sorted(set((i, j) for n in range(1, max_num + 1) for i in range(1, n + 1)
                        for j in range(1, n + 1) if 1 <= i * j <= max_num), key=lambda x: x[0] * x[1])
    cols, rows = _find_closest_aspect_ratio(width / height, ratios, width, height, 448)
    assert (geo.tile_cols, geo.tile_rows) == (cols, rows)
    assert geo.num_tiles == cols * rows + (1 if cols * rows > 1 else 0)
    assert (geo.resized_width, geo.resized_height) == (448 * cols, 448 * rows)


@pytest.mark.parametrize('width,height', [(50, 60), (800, 600), (1920, 1080), (300, 2000), (5000, 400)])
def test_internvl_real_tiling(width, height):
    # Tiles actually cut by ms-swift (pixels, thumbnail included) for a few images.
    from PIL import Image
    from swift.template.vision_utils import transform_image
    geo = internvl_geometry(width=width, height=height)
    assert transform_image(Image.new('RGB', (width, height))).shape[0] == geo.num_tiles
    assert geo.num_tokens == geo.num_tiles * 256


@settings(max_examples=1500, deadline=None)
@given(width=st.integers(1, 8000), height=st.integers(1, 8000), max_num=st.integers(1, 24))
def test_internvl_hf_grid_matches_transformers(width, height, max_num):
    # The transformers-native InternVL (GotOcr2) processor orders candidate grids differently.
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas
    geo = internvl_geometry(width=width, height=height, max_num=max_num,
                            ratios=hf_tile_ratios(1, max_num))
    assert (geo.tile_cols, geo.tile_rows) == get_optimal_tiled_canvas(
        (height, width), (448, 448), 1, max_num)


@pytest.mark.parametrize('template,size,clamp', [
    ('internvl2_5_geo', (30, 30), Clamp.UPSCALE),  # one 448x448 tile: 15x
    ('internvl2_5_geo', (448, 448), None),
    ('internvl2_5_geo', (640, 480), Clamp.UPSCALE),  # 4x3 tiles: 1792x1344
    ('internvl2_5_geo', (4000, 3000), Clamp.CANVAS_FIT),  # the same 4x3 tiles: shrunk
    ('internvl2_5_geo', (460, 440), Clamp.CANVAS_FIT),  # one tile: squashed on one side, stretched on the other
    ('internvl_hf_geo', (30, 30), Clamp.UPSCALE),
    ('internvl_hf_geo', (4000, 3000), Clamp.CANVAS_FIT),
])
def test_clamp_names_what_the_tiling_did(template, size, clamp):
    # The tile grid ms-swift's (or transformers') own function picks decides the canvas the image is resized to.
    from swift.template.vision_utils import _find_closest_aspect_ratio
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas
    w, h = size
    if template == 'internvl_hf_geo':
        cols, rows = get_optimal_tiled_canvas((h, w), (448, 448), 1, 12)
    else:
        ratios = sorted(set((i, j) for n in range(1, 13) for i in range(1, n + 1) for j in range(1, n + 1)
                            if 1 <= i * j <= 12), key=lambda x: x[0] * x[1])
        cols, rows = _find_closest_aspect_ratio(w / h, ratios, w, h, 448)
    real = (448 * cols, 448 * rows)
    geo, clamped = default_settings(template).predict(width=w, height=h)
    assert (geo.resized_width, geo.resized_height) == real and clamped == clamp
    assert (clamped == Clamp.UPSCALE) == (real[0] >= w and real[1] >= h and real != size)
