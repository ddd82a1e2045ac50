"""HunyuanOCR (``hunyuan_ocr``, published processor code): the resize and token count pinned to transformers'
``HunYuanVLImageProcessor`` / ``HunYuanVLProcessor`` over thousands of sizes and real images; the upstream failure
pinned on a tiny checkpoint (ms-swift 4.6.0's template reads ``processor.pad_id``, which transformers 5.19's
processor lacks); with that one attribute supplied, the real template's encodes record the predicted geometry."""
import functools
import random

import pytest
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_of
from swift_ext.families.hunyuan_ocr import HUNYUAN_MAX_PIXELS, HUNYUAN_MIN_PIXELS, HunyuanOCR
from swift_ext.geometry import Clamp, GeometryError
from swift_ext.images import image_key
from swift_ext.settings import default_settings
from swift_ext.store import STORE, row_limits_key
from swift_ext.testing import contract

_template = functools.partial(contract.template, max_length=32768)  # HunyuanOCR's floor: 262,144 pixels
_sizes = functools.partial(contract.factor_sizes, factor=32, tiny_top=70, tall=64)

TEMPLATE = 'hunyuan_ocr_geo'
PAD_ID = 120002  # what the processor Tencent first published set as `pad_id`
LIMITS = [  # (min_pixels, max_pixels)
    (HUNYUAN_MIN_PIXELS, HUNYUAN_MAX_PIXELS),  # HunYuanVLImageProcessor's defaults (tencent/HunyuanOCR)
    (56 * 56, 28 * 28 * 1280),
    (0, 32 * 32 * 64),  # no floor: a zero side is possible
]


@pytest.mark.parametrize('min_pixels,max_pixels', LIMITS)
def test_resize_parity_with_transformers_over_thousands_of_sizes(min_pixels, max_pixels):
    from transformers.models.hunyuan_vl import image_processing_hunyuan_vl as tv
    from transformers.models.hunyuan_vl import image_processing_pil_hunyuan_vl as pil
    sizes = _sizes(3000 if (min_pixels, max_pixels) == LIMITS[0] else 1000, seed=max_pixels)
    # the torchvision and the PIL image processor each carry a copy
    mismatches, outcomes = contract.zero_floor_parity((tv, pil), sizes, factor=32, min_pixels=min_pixels,
                                                      max_pixels=max_pixels)
    assert mismatches == [], f'{len(mismatches)} of {len(sizes)}: {mismatches[:3]}'
    if (min_pixels, max_pixels) == LIMITS[0]:
        assert outcomes == {None, Clamp.MIN_PIXELS, Clamp.MAX_PIXELS, 'refused'}


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    from swift_ext.testing.tiny import hunyuan_vl
    out = tmp_path_factory.mktemp('tiny_hunyuan') / 'hunyuan_ocr'
    hunyuan_vl.build('hunyuan_ocr', str(out), 0)
    return str(out)


@pytest.fixture(scope='module')
def processor(checkpoint):
    from swift.model import get_processor
    return get_processor(checkpoint, model_type='hunyuan_ocr')


@pytest.mark.tiny  # its checkpoint is built here (no registered recipe), not by `tiny_model`
def test_token_count_is_the_processors(processor):
    # HunYuanVLProcessor's own count (a row break a row, start and end): what ms-swift's template expands to.
    settings = default_settings(TEMPLATE)
    sizes = [s for s in _sizes(1500, seed=5) if max(s) / min(s) <= 200]
    counts = processor._get_num_multimodal_tokens(image_sizes=[(h, w) for w, h in sizes])['num_image_tokens']
    for (w, h), count in zip(sizes, counts, strict=True):
        assert settings.predict(width=w, height=h)[0].num_tokens == count, (w, h)
    assert len(sizes) > 1100


_RNG = random.Random(4)
REAL_SIZES = [(1, 1), (10, 1000), (50, 60), (640, 480), (1000, 40), (3000, 2000), (5000, 4000)] + [
    (_RNG.randint(1, 2500), _RNG.randint(1, 2500)) for _ in range(13)]


@pytest.mark.parametrize('size', [s for s in REAL_SIZES if max(s) / min(s) <= 200])
def test_geometry_is_what_the_processor_does_to_a_real_image(size):
    import transformers as tf
    out = tf.HunYuanVLImageProcessor()(images=[Image.new('RGB', size, (200, 30, 30))], return_tensors='pt')
    geo, _ = default_settings(TEMPLATE).predict(width=size[0], height=size[1])
    t, gh, gw = geo.grid
    assert out['image_grid_thw'][0].tolist() == [t, gh, gw]
    assert out['pixel_values'].shape[0] == gh * gw  # one row per 16-pixel patch
    assert (geo.resized_width, geo.resized_height) == (gw * 16, gh * 16)


@pytest.mark.parametrize('size,clamp', [((640, 480), None), ((100, 80), Clamp.MIN_PIXELS),
                                        ((10, 1000), Clamp.MIN_PIXELS), ((4000, 3000), Clamp.MAX_PIXELS)])
def test_clamp_names(size, clamp):
    assert default_settings(TEMPLATE).predict(width=size[0], height=size[1])[1] == clamp


def test_an_aspect_ratio_over_200_is_refused_as_the_processor_refuses_it():
    with pytest.raises(GeometryError, match='aspect ratio over 200'):
        default_settings(TEMPLATE).predict(width=2, height=402, name='strip.png')


# ----------------------------------------------------------------------- the parent template, as released
@pytest.fixture(scope='module')
def images(tmp_path_factory):
    return contract.write_images(tmp_path_factory.mktemp('hunyuan_images'), SIZES + [(3000, 2000)], (30, 30, 200))


SIZES = [(640, 480), (20, 30), (1000, 40), (300, 500)]


def _sample(paths, text='Detect and recognize text in the image.', **extra):
    return {'messages': [{'role': 'user', 'content': text.join(['<image>'] * len(paths)) + text},
                         {'role': 'assistant', 'content': 'INVOICE(112,40),(388,72)'}], 'images': list(paths), **extra}


@pytest.mark.tiny  # its checkpoint is built here (no registered recipe), not by `tiny_model`
def test_ms_swift_cannot_encode_an_image_with_transformers_hunyuan_vl_processor(processor, images):
    # The upstream failure (ms-swift 4.6.0, transformers 5.19): HunYuanVLTemplate._encode ends with
    # `processor.pad_id`; transformers' HunYuanVLProcessor (and its tokenizer) name it `pad_token_id`.
    # When this test fails, a release fixed it: see what tests/e2e/test_hunyuan_ocr.py says of training, then
    # set verification='encode' and model_type='hunyuan_ocr' on the spec and put 'hunyuan_ocr' in
    # swift_ext/testing/tiny/hunyuan_vl.py's PARENTS.
    assert not hasattr(processor, 'pad_id') and not hasattr(processor.tokenizer, 'pad_id')
    assert processor.pad_token_id == PAD_ID
    for name in ('hunyuan_ocr', TEMPLATE):
        tpl = _template(processor, name)
        with pytest.raises(AttributeError, match='pad_id'):
            tpl.encode(_sample([images[(640, 480)]]))
        text_only = tpl.encode({'messages': [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'x'}]})
        assert 120120 not in text_only['input_ids']  # a row without an image encodes


def test_spec_says_published_code_and_the_spotting_convention():
    _, spec = family_of(TEMPLATE)
    assert spec.verification == 'published_code' and spec.model_type is None
    assert (spec.coords, spec.box_styles, spec.boxes_trained) == ('norm1000', ('hunyuan_spot',), True)
    assert 'Tencent-Hunyuan/HunyuanOCR' in spec.coords_source and 'denormalize_coordinates' in spec.coords_source
    assert HunyuanOCR.video_support == 'refused'


# ----------------------------------------------------------------------- with the missing attribute supplied
@pytest.fixture
def fixed(processor, monkeypatch):
    """The processor with the one attribute the template reads, as Tencent's first processor set it."""
    monkeypatch.setattr(processor, 'pad_id', PAD_ID, raising=False)
    return processor


@pytest.mark.tiny  # its checkpoint is built here (no registered recipe), not by `tiny_model`
def test_with_pad_id_supplied_the_encode_is_identical_and_records_the_prediction(fixed, images):
    parent, geo_tpl = _template(fixed, 'hunyuan_ocr'), _template(fixed, TEMPLATE)
    settings = geo_tpl.geo_settings()
    assert (settings.min_pixels, settings.max_pixels, settings.patch_size) == (HUNYUAN_MIN_PIXELS, HUNYUAN_MAX_PIXELS,
                                                                              16)
    STORE.clear()
    for group in ([SIZES[0]], SIZES[1:3], [SIZES[3], (3000, 2000)]):
        paths = [images[s] for s in group]
        a, b = parent.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
        contract.assert_same_encode(a, b)
        ids = b['input_ids']
        runs = [len(r) for r in ''.join('x' if t == 120120 else ' ' for t in ids).split()]
        for i, (path, size) in enumerate(zip(paths, group, strict=True)):
            geo = STORE.get(image_key(path), row_limits_key(None), TEMPLATE)
            predicted, _ = settings.predict(width=size[0], height=size[1])
            t, gh, gw = b['image_grid_thw'][i].tolist()
            assert geo == predicted
            assert geo.grid == (t, gh, gw) and (geo.resized_width, geo.resized_height) == (gw * 16, gh * 16)
            assert geo.num_tokens == runs[i] == (gh // 2) * (gw // 2 + 1) + 2


@pytest.mark.tiny  # its checkpoint is built here (no registered recipe), not by `tiny_model`
def test_with_pad_id_supplied_a_row_max_pixels_prerescales_first(fixed, images):
    geo_tpl = _template(fixed, TEMPLATE)
    row = {'max_pixels': 200000}
    path = images[(3000, 2000)]
    STORE.clear()
    encoded = geo_tpl.encode(_sample([path], chat_template_kwargs=row))
    geo = STORE.get(image_key(path), row_limits_key(row), TEMPLATE)
    predicted, clamp = geo_tpl.geo_settings().predict(width=3000, height=2000, row_kwargs=row)
    assert geo == predicted and clamp == Clamp.MAX_PIXELS
    assert encoded['image_grid_thw'][0].tolist() == list(geo.grid)
    assert geo.resized_width * geo.resized_height >= HUNYUAN_MIN_PIXELS  # rescaled to 547x365, then floored up
