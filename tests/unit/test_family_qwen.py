"""Qwen's smart_resize (swift_ext.families.qwen) against qwen-vl-utils, fetch_image and transformers' processor.

Moved here from test_geometry.py with the arithmetic: the family's facts live in its module.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swift_ext.families.qwen import qwen_geometry, smart_resize
from swift_ext.geometry import Clamp, GeometryError
from swift_ext.settings import default_settings

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


@pytest.mark.parametrize('size,env,clamp', [
    ((640, 480), {}, None),
    ((30, 30), {}, Clamp.MIN_PIXELS),  # grown to the 4-token floor: 56x56
    ((1920, 1080), {'MAX_PIXELS': '50176'}, Clamp.MAX_PIXELS),  # qwen-vl-utils' own cap: 280x168
    ((6000, 5000), {}, Clamp.MAX_PIXELS),  # over 16384 tokens
])
def test_clamp_names_the_smart_resize_branch(size, env, clamp):
    # qwen-vl-utils resizes to (nearly) the rounded size, except where its cap or floor rescales it.
    from swift_ext.settings import settings_for
    s = settings_for('qwen2_5_vl_geo', env=env)
    h, w = qvu.smart_resize(size[1], size[0], factor=28, min_pixels=s.min_pixels or 3136,
                            max_pixels=s.max_pixels or 12845056)
    geo, clamped = s.predict(width=size[0], height=size[1])
    assert (geo.resized_width, geo.resized_height) == (w, h) and clamped == clamp
    rounded = (max(28, round(size[0] / 28) * 28), max(28, round(size[1] / 28) * 28))
    assert (clamped is None) == ((w, h) == rounded)


def test_prerescale_names_the_clamp_before_the_floor():
    # ms-swift's --max_pixels shrank it first, then qwen-vl-utils grew it to its floor: max_pixels.
    geo, clamped = default_settings('qwen2_5_vl_geo', swift_max_pixels=400).predict(width=100, height=100)
    assert (geo.resized_width, geo.resized_height, clamped) == (56, 56, Clamp.MAX_PIXELS)
    assert geo.max_scale == pytest.approx(0.56)
