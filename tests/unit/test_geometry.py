"""The geometry core against the real libraries it predicts: qwen-vl-utils, transformers, ms-swift."""
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swift_ext.families.internvl import internvl_geometry
from swift_ext.families.internvl_hf import hf_tile_grids as hf_tile_ratios
from swift_ext.families.qwen import qwen_geometry, smart_resize
from swift_ext.geometry import GeometryError, ImageGeometry

qvu = pytest.importorskip('qwen_vl_utils.vision_process')


@pytest.mark.parametrize('width,height,expected', [
    (640, 480, (644, 476)),      # observed in ms-swift at Qwen2.5 defaults
    (1920, 1080, (1932, 1092)),  # observed
    (300, 2000, (308, 1988)),    # observed: portrait
    (50, 60, (56, 56)),          # observed: grown to the 4-token minimum
    (28, 28, (56, 56)),          # one patch grows to the minimum 2x2 merge
    (5000, 5000, (3556, 3556)),  # shrunk under 16384 tokens (float floor: not 3584)
])
def test_known_qwen25_sizes(width, height, expected):
    geo = qwen_geometry(width=width, height=height)
    assert (geo.resized_width, geo.resized_height) == expected
    assert geo.grid == (1, expected[1] // 14, expected[0] // 14)
    assert geo.num_tokens == expected[0] * expected[1] // 28 ** 2


def _library(width, height, factor, min_pixels, max_pixels):
    try:
        h, w = qvu.smart_resize(height, width, factor=factor, min_pixels=min_pixels,
                                max_pixels=max_pixels)
    except (ValueError, AssertionError):
        return 'error'
    return 'error' if h <= 0 or w <= 0 else (w, h)


def _ours(width, height, factor, min_pixels, max_pixels):
    try:
        return smart_resize(width=width, height=height, factor=factor, min_pixels=min_pixels,
                            max_pixels=max_pixels)[0]
    except GeometryError:
        return 'error'


sides = st.integers(min_value=1, max_value=20000)


@settings(max_examples=3000, deadline=None)
@given(width=sides, height=sides, factor=st.sampled_from([28, 32]),
       min_tokens=st.one_of(st.none(), st.integers(1, 64)),
       max_tokens=st.one_of(st.none(), st.integers(1, 20000)))
def test_smart_resize_parity(width, height, factor, min_tokens, max_tokens):
    # Same result as qwen-vl-utils for every input, errors exactly where it fails or gives 0.
    min_pixels = None if min_tokens is None else min_tokens * factor ** 2
    max_pixels = None if max_tokens is None else max_tokens * factor ** 2
    assert _ours(width, height, factor, min_pixels, max_pixels) == \
        _library(width, height, factor, min_pixels, max_pixels)


@settings(max_examples=1000, deadline=None)
@given(width=st.integers(1, 3000), height=st.integers(1, 3000),
       max_pixels=st.integers(1, 400000))
def test_smart_resize_parity_raw_limits(width, height, max_pixels):
    # Limits that are not whole token counts (a user's raw chat_template_kwargs).
    assert _ours(width, height, 28, None, max_pixels) == _library(width, height, 28, None, max_pixels)


def test_zero_side_is_an_error_not_a_zero():
    # qwen-vl-utils returns a 0-wide size here; we refuse with the rule in the message.
    h, w = qvu.smart_resize(10000, 50, factor=28, max_pixels=3136 * 4)
    assert 0 in (h, w)
    with pytest.raises(GeometryError, match='zero side'):
        qwen_geometry(width=50, height=10000, max_pixels=3136 * 4)


@pytest.mark.parametrize('kwargs,match', [
    (dict(width=0, height=10), '`width` must be positive, got 0'),
    (dict(width=10, height=-3), '`height` must be positive, got -3'),
    (dict(width=1, height=10000), 'aspect ratio must be at most 200, got 10000.0'),
    (dict(width=10.5, height=10), '`width` must be an integer'),
    (dict(width=100, height=100, min_pixels=10, max_pixels=5), 'max_pixels` must be >= `min_pixels'),
])
def test_bad_qwen_input(kwargs, match):
    with pytest.raises(GeometryError, match=match):
        qwen_geometry(**kwargs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(8, 700), height=st.integers(8, 700))
def test_fetch_image_output_size(width, height):
    # The real fetch_image on real pixels lands on exactly the predicted size.
    from PIL import Image
    if max(width, height) / min(width, height) > 200:
        return
    img = Image.new('RGB', (width, height))
    out = qvu.fetch_image({'image': img})
    geo = qwen_geometry(width=width, height=height)
    assert out.size == (geo.resized_width, geo.resized_height)


@pytest.fixture(scope='module')
def qwen2_image_processor():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    return Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2,
                                 min_pixels=3136, max_pixels=12845056)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.integers(8, 600), height=st.integers(8, 600))
def test_transformers_grid(qwen2_image_processor, width, height):
    # As ms-swift calls it: fetch_image resizes, then the transformers processor with
    # do_resize=False produces image_grid_thw, which must be our grid.
    from PIL import Image
    if max(width, height) / min(width, height) > 200:
        return
    img = qvu.fetch_image({'image': Image.new('RGB', (width, height))})
    out = qwen2_image_processor(images=[img], return_tensors='pt', do_resize=False)
    geo = qwen_geometry(width=width, height=height)
    assert tuple(int(x) for x in out['image_grid_thw'][0]) == geo.grid


def test_transformers_own_resize_differs_on_thin_images():
    # transformers' smart_resize rounds a side below factor/2 to 0 and then grows it, so it
    # disagrees with qwen-vl-utils (which ms-swift uses) on such images: 8x98 -> 28x196.
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_resize
    assert hf_resize(98, 8, factor=28, min_pixels=3136, max_pixels=12845056) == (196, 28)
    geo = qwen_geometry(width=8, height=98)
    assert (geo.resized_height, geo.resized_width) == qvu.smart_resize(98, 8, factor=28) == (112, 28)


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


@pytest.mark.parametrize('geo,box,resized', [
    (qwen_geometry(width=640, height=480), [64, 48, 320, 240], [64.4, 47.6, 322.0, 238.0]),
    (internvl_geometry(width=800, height=600), [0, 0, 800, 600], [0, 0, 1792, 1344]),
])
def test_box_mapping_round_trip(geo, box, resized):
    assert geo.to_resized(box) == pytest.approx(resized)
    assert geo.to_original(geo.to_resized(box)) == pytest.approx(box)


def test_to_dict_round_trip():
    geo = qwen_geometry(width=640, height=480)
    assert ImageGeometry.from_dict(geo.to_dict()) == geo
    assert geo.to_dict()['grid'] == [1, 34, 46]


def test_import_is_light():
    # Rewards and log tools import the core in milliseconds: no torch, PIL or swift.
    code = ('import sys, swift_ext.geometry, swift_ext.settings, swift_ext.records; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "PIL", "swift", "torchvision")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '[]'
