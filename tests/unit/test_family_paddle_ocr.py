"""PaddleOCR-VL 1.5 geometry, pinned to transformers' own ``smart_resize`` over thousands of sizes,
and to real encodes (tiny PaddleOCR-VL checkpoint) whose recorded geometry is what the processor did,
including a row's ``chat_template_kwargs`` size limits."""

import functools

import pytest
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families.paddle_ocr import PADDLE_MAX_PIXELS, PADDLE_MIN_PIXELS, PaddleOcr, paddle_smart_resize
from swift_ext.geometry import Clamp, GeometryError
from swift_ext.images import image_key
from swift_ext.settings import default_settings
from swift_ext.store import STORE, row_limits_key
from swift_ext.testing import contract

_sample = functools.partial(contract.sample, prompt='OCR:', answer='hello')


PADDLE_LIMITS = [  # (min_pixels, max_pixels) = the processor's size shortest_edge / longest_edge
    (112896, 1003520),  # PaddleOCR-VL-1.5 preprocessor_config.json
    (384 * 384, 1536 * 1536),  # PaddleOCRVLImageProcessor's class default
    (147384, 2822400),  # PaddleOCR-VL (1.0)
    (200704, 401408),  # a narrow band: both branches often
]


@pytest.mark.parametrize('min_pixels,max_pixels', PADDLE_LIMITS)
def test_paddle_smart_resize_parity(min_pixels, max_pixels):
    from transformers.models.paddleocr_vl.image_processing_paddleocr_vl import smart_resize
    sizes = contract.mixed_sizes(min_pixels ^ max_pixels, 1500)
    mismatches, outcomes = contract.resize_parity(
        sizes, lambda w, h: paddle_smart_resize(width=w, height=h, min_pixels=min_pixels, max_pixels=max_pixels),
        lambda w, h: tuple(smart_resize(h, w, factor=28, min_pixels=min_pixels, max_pixels=max_pixels))[::-1])
    assert mismatches == [], f'{len(mismatches)} of {len(sizes)}: {mismatches[:5]}'
    if (min_pixels, max_pixels) == PADDLE_LIMITS[0]:
        assert outcomes == {None, 'max_pixels', 'min_pixels', 'upscale', 'refused'}


@pytest.mark.parametrize('size,clamp', [
    ((640, 480), None),
    ((30, 30), Clamp.MIN_PIXELS),
    ((20, 3000), Clamp.UPSCALE),  # its 20-pixel side set to 28 (28x4200), inside both limits
    ((4000, 3000), Clamp.MAX_PIXELS),
])
def test_clamp_names_what_the_resize_did(size, clamp):
    from transformers.models.paddleocr_vl.image_processing_paddleocr_vl import smart_resize
    rh, rw = smart_resize(size[1], size[0], factor=28, min_pixels=PADDLE_MIN_PIXELS, max_pixels=PADDLE_MAX_PIXELS)
    geo, clamped = default_settings('paddle_ocr_1_5_geo').predict(width=size[0], height=size[1])
    assert (geo.resized_width, geo.resized_height) == (rw, rh) and clamped == clamp
    if clamp == Clamp.UPSCALE:
        assert rw >= size[0] and rh >= size[1]


def test_token_count_parity_with_the_processor():
    import transformers as tf
    ip = tf.PaddleOCRVLImageProcessor(min_pixels=112896, max_pixels=1003520)
    settings = default_settings('paddle_ocr_1_5_geo')
    assert contract.assert_token_parity(ip, settings, contract.mixed_sizes(11, 2000)) > 1500


@pytest.mark.parametrize('row,match', [
    ({'shortest_edge': 200000}, 'gives only `shortest_edge`=200000'),
    ({'longest_edge': 50000, 'shortest_edge': 0}, 'gives only `longest_edge`=50000'),
    ({'shortest_edge': 'big', 'longest_edge': 50000}, '`shortest_edge` must be a number'),
])
def test_row_limits_refused_where_the_processor_refuses(row, match):
    with pytest.raises(GeometryError, match=match):
        default_settings('paddle_ocr_1_5_geo').predict(width=640, height=480, row_kwargs=row, name='page.png')


def test_row_limits_and_prerescale():
    settings = default_settings('paddle_ocr_1_5_geo')
    geo, clamped = settings.predict(width=640, height=480, row_kwargs={'shortest_edge': 1000, 'longest_edge': 100000})
    assert (geo.resized_width, geo.resized_height, clamped) == (364, 252, Clamp.MAX_PIXELS)
    geo, clamped = settings.predict(width=1280, height=960, row_kwargs={'max_pixels': 50176})
    # ms-swift's own pre-rescale to 258x193, then PaddleOCR-VL's floor of 112896 pixels.
    assert (geo.original_width, geo.resized_width, geo.resized_height, clamped) == (1280, 392, 308, Clamp.MAX_PIXELS)


def test_coords_say_no_trained_box_output():
    spec = PaddleOcr.spec('paddle_ocr_1_5')
    assert 'no trained box output' in spec.coords_source and spec.model_type == 'paddleocr_vl'


# ----------------------------------------------------------------------- real encodes
SIZES = [(640, 480), (20, 30), (1000, 40), (300, 500), (2000, 1500)]


@pytest.fixture(scope='module')
def paddle(tiny_model):
    from swift.model import get_processor
    return get_processor(tiny_model('paddle_ocr_1_5'), model_type='paddleocr_vl')


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    return contract.write_images(tmp_path_factory.mktemp('paddle_images'), SIZES + [(2, 500)], (30, 30, 200))


def _check_recorded(encoded, paths, settings, row=None):
    runs = [len(r) for r in ''.join('x' if t == 100295 else ' ' for t in encoded['input_ids']).split()]
    for i, path in enumerate(paths):
        geo = STORE.get(image_key(path), row_limits_key(row), 'paddle_ocr_1_5_geo')
        w, h = Image.open(path).size
        predicted, _ = settings.predict(width=w, height=h, row_kwargs=row)
        t, gh, gw = encoded['image_grid_thw'][i].tolist()
        assert (geo.original_width, geo.original_height) == (w, h)
        assert (geo.resized_width, geo.resized_height) == (gw * 14, gh * 14)
        assert (predicted.resized_width, predicted.resized_height) == (gw * 14, gh * 14)
        assert geo.grid == predicted.grid == (t, gh, gw)
        assert geo.num_tokens == runs[i] == t * gh * gw // 4 == predicted.num_tokens


def test_encode_identical_and_geometry_recorded(paddle, images):
    parent, geo_tpl = contract.template(paddle, 'paddle_ocr_1_5'), contract.template(paddle, 'paddle_ocr_1_5_geo')
    settings = geo_tpl.geo_settings()
    assert (settings.min_pixels, settings.max_pixels) == (112896, 1003520)
    for group in ([SIZES[0]], SIZES[1:3], SIZES[3:]):
        paths = [images[s] for s in group]
        a, b = parent.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
        contract.assert_same_encode(a, b)
        _check_recorded(b, paths, settings)


def test_row_size_limits_reach_the_processor(paddle, images):
    parent, geo_tpl = contract.template(paddle, 'paddle_ocr_1_5'), contract.template(paddle, 'paddle_ocr_1_5_geo')
    row = {'shortest_edge': 1000, 'longest_edge': 100000}
    paths = [images[(640, 480)], images[(2000, 1500)]]
    a = parent.encode(_sample(paths, chat_template_kwargs=row))
    b = geo_tpl.encode(_sample(paths, chat_template_kwargs=row))
    contract.assert_same_encode(a, b)
    _check_recorded(b, paths, geo_tpl.geo_settings(), row)
    # Edge limits are part of the store key: the same file under other limits is another record.
    assert STORE.get(image_key(paths[0]), row_limits_key(row), 'paddle_ocr_1_5_geo').resized_width == 364
    assert row_limits_key(row) != row_limits_key({})


def test_refusals_match_the_parent(paddle, images):
    one_limit = _sample([images[(640, 480)]], chat_template_kwargs={'shortest_edge': 200000})
    thin = _sample([images[(2, 500)]])
    # The parent refuses with the processor's words; the _geo template refuses the same images with a
    # GeometryError (a ValueError) that names the image and the rule.
    with pytest.raises(ValueError, match="must contain 'shortest_edge' and 'longest_edge'"):
        contract.template(paddle, 'paddle_ocr_1_5').encode(one_limit)
    with pytest.raises(GeometryError, match=r'img_640x480.png: chat_template_kwargs gives only `shortest_edge`'):
        contract.template(paddle, 'paddle_ocr_1_5_geo').encode(one_limit)
    for name in ('paddle_ocr_1_5', 'paddle_ocr_1_5_geo'):
        with pytest.raises(ValueError, match='aspect ratio'):
            contract.template(paddle, name).encode(thin)


def test_training_forward_bug_is_the_parents(tiny_model, paddle, images):
    # ms-swift 4.6.0 + transformers 5.19: the PARENT's `_post_encode` fails on the tuple that
    # `get_image_features(...).pooler_output` now is; the e2e run stops there. Strict, so a fix shows.
    import torch as _torch
    from swift.model import get_model_processor
    model, proc = get_model_processor(tiny_model('paddle_ocr_1_5'), model_type='paddleocr_vl',
                                      torch_dtype=_torch.float32)
    parent = contract.template(proc, 'paddle_ocr_1_5')
    batch = parent.data_collator([parent.encode(_sample([images[(20, 30)]]))])
    assert parent.is_training
    with pytest.raises(AttributeError, match="'tuple' object has no attribute 'to'"):
        parent._post_encode(model, batch)
