"""InternVL tiling (swift_ext.families.internvl, internvl_hf) against ms-swift's _dynamic_preprocess and
transformers' GotOcr2 processor. Moved here from test_geometry.py with the arithmetic."""
import functools
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from swift_ext.families.internvl import MAX_TILES, closest_grid, internvl_geometry, swift_tile_grids
from swift_ext.families.internvl_hf import hf_tile_grids
from swift_ext.geometry import Clamp, GeometryError
from swift_ext.settings import default_settings, settings_for


@functools.cache
def swift_order(max_num: int, min_num: int = 1) -> tuple:
    """ms-swift's own construction in _dynamic_preprocess (cubic in max_num), copied as the reference."""
    ratios = set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
                 if min_num <= i * j <= max_num)
    return tuple(sorted(ratios, key=lambda x: x[0] * x[1]))


@settings(max_examples=2000, deadline=None)
@given(width=st.integers(1, 8000), height=st.integers(1, 8000), max_num=st.integers(1, 40))
def test_internvl_tiles_match_ms_swift(width, height, max_num):
    # ms-swift's own _dynamic_preprocess on a real image gives the same tile count.
    from swift.template.vision_utils import _find_closest_aspect_ratio
    geo = internvl_geometry(width=width, height=height, max_num=max_num)
    cols, rows = _find_closest_aspect_ratio(width / height, list(swift_order(max_num)), width, height, 448)
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
    geo = internvl_geometry(width=width, height=height, max_num=max_num, grids=hf_tile_grids(1, max_num))
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
        cols, rows = _find_closest_aspect_ratio(w / h, list(swift_order(12)), w, h, 448)
    real = (448 * cols, 448 * rows)
    geo, clamped = default_settings(template).predict(width=w, height=h)
    assert (geo.resized_width, geo.resized_height) == real and clamped == clamp
    assert (clamped == Clamp.UPSCALE) == (real[0] >= w and real[1] >= h and real != size)


# ------------------------------------------------------ issue 27 item 6: MAX_NUM of thousands, INPUT_SIZE <= 0
@pytest.mark.parametrize('min_num', [1, 2, 3])
def test_grid_order_is_ms_swifts_set_order_for_every_max_num(min_num):
    # Same grids in the same order (ties of equal area in the set's iteration order): 0..150 (1..60 for the
    # min_num ms-swift never uses, which only checks the construction's first step).
    top = 150 if min_num == 1 else 60
    bad = [m for m in range(0, top + 1) if swift_tile_grids(min_num, m).order != swift_order(m, min_num)]
    assert bad == []


@pytest.mark.parametrize('max_num', [257, 500, 1000])
def test_grid_order_is_ms_swifts_for_large_max_num(max_num):
    # 1000 is the value that took ms-swift's loop (and swift-ext's copy of it) 13 s.
    assert swift_tile_grids(1, max_num).order == swift_order(max_num)


def test_hf_grid_order_is_transformers():
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_all_supported_aspect_ratios
    for min_num in (1, 2):
        for m in list(range(0, 120)) + [500, 2000]:
            assert list(hf_tile_grids(min_num, m).order) == get_all_supported_aspect_ratios(min_num, m), (min_num, m)


def _sizes(seed, n):
    """Random sizes, and sizes whose aspect ratio is exactly a grid's or halfway between two (ties)."""
    rng = random.Random(seed)
    out = [(rng.randint(1, 8000), rng.randint(1, 8000)) for _ in range(n)]
    for cols, rows in [(1, 1), (2, 1), (3, 2), (1, 3), (4, 3), (7, 5)]:
        k = rng.randint(1, 900)
        out += [(cols * k, rows * k), (rows * k, cols * k)]
    out += [(3 * k, 2 * k) for k in (1, 50, 149, 150, 300, 600)]  # 1.5: halfway between 1 and 2
    out += [(5 * k, 4 * k) for k in (1, 100, 400)]  # 1.25: halfway between 1 and 1.5
    return out


@pytest.mark.parametrize('max_num', [1, 2, 5, 6, 12, 24, 40, 64, 150, 1000])
@pytest.mark.parametrize('image_size', [448, 224])
def test_closest_grid_is_ms_swifts_scan(max_num, image_size):
    # ms-swift's own _find_closest_aspect_ratio over the same grid order, ties and area rule included.
    from swift.template.vision_utils import _find_closest_aspect_ratio
    grids = swift_tile_grids(1, max_num)
    order = list(grids.order)
    bad = []
    for w, h in _sizes(max_num * 7 + image_size, 700):
        want = _find_closest_aspect_ratio(w / h, order, w, h, image_size)
        if closest_grid(width=w, height=h, grids=grids, image_size=image_size) != want:
            bad.append((w, h, want))
    assert bad == []


@pytest.mark.parametrize('max_num', [24, 300, 2000])
def test_closest_grid_is_transformers_scan(max_num):
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas
    grids = hf_tile_grids(1, max_num)
    bad = [(w, h) for w, h in _sizes(max_num, 400)
           if closest_grid(width=w, height=h, grids=grids, image_size=448)
           != tuple(get_optimal_tiled_canvas((h, w), (448, 448), 1, max_num))]
    assert bad == []


@pytest.mark.parametrize('max_num', [1000, 3000])
def test_thousands_of_tiles_predict_in_milliseconds(max_num):
    # Before: MAX_NUM=1000 took 13 s for the first prediction and 3000 over a minute (a cubic loop).
    settings_ = settings_for('internvl2_5_geo', env={'MAX_NUM': str(max_num)})
    start = time.perf_counter()
    settings_.predict(width=641 + max_num, height=480)  # a size no other test asked: the grids are built here
    first = time.perf_counter() - start
    start = time.perf_counter()
    for w, h in _sizes(max_num, 500):
        settings_.predict(width=w, height=h)
    each = (time.perf_counter() - start) / 500
    assert first < 3.0 and each < 0.005, (first, each)


def test_above_the_limit_is_refused_by_name():
    with pytest.raises(GeometryError, match=rf'a.png: .*at most {MAX_TILES} tiles.*MAX_NUM.* = {MAX_TILES + 1}'):
        settings_for('internvl2_5_geo', env={'MAX_NUM': str(MAX_TILES + 1)}).predict(width=640, height=480,
                                                                                  name='a.png')


@pytest.mark.parametrize('input_size', ['0', '-448', '-1'])
def test_input_size_ms_swift_refuses_is_refused(input_size):
    # ms-swift's transform_image raises for a tile side <= 0; before, swift-ext predicted the default 448.
    from swift.template.vision_utils import transform_image
    with pytest.raises(ValueError):
        transform_image(Image.new('RGB', (64, 48)), int(input_size), 12)
    settings_ = settings_for('internvl2_5_geo', env={'INPUT_SIZE': input_size})
    with pytest.raises(GeometryError, match=rf'photo.png: the InternVL tile side .*INPUT_SIZE.* must be a positive '
                                            rf'integer, got {input_size}'):
        settings_.predict(width=64, height=48, name='photo.png')


@pytest.mark.parametrize('env', [{'INPUT_SIZE': '1'}, {'INPUT_SIZE': '27'}, {'INPUT_SIZE': '224', 'MAX_NUM': '6'},
                                 {'MAX_NUM': '0'}, {'MAX_NUM': '-3'}, {'MAX_NUM': '1'}, {'MAX_NUM': '40'}])
@pytest.mark.parametrize('size', [(64, 48), (640, 480), (3000, 200)])
def test_what_ms_swift_accepts_is_predicted(env, size):
    # Tile count and tile side as ms-swift's transform_image cuts them; MAX_NUM <= 0 leaves one tile (no grid).
    from swift.template.vision_utils import transform_image
    settings_ = settings_for('internvl2_5_geo', env=env)
    pixels = transform_image(Image.new('RGB', size), settings_.image_size, settings_.max_num)
    geo, _ = settings_.predict(width=size[0], height=size[1])
    assert (pixels.shape[0], pixels.shape[-1]) == (geo.num_tiles, settings_.image_size)
