"""ERNIE-4.5-VL (``ernie_vl`` / ``ernie_vl_thinking``, published processor code): the resize pinned to transformers'
port of the checkpoint's processor (``smart_resize``, ``Ernie4_5_VLMoeImageProcessor``) over thousands of sizes and
real images; ms-swift's template needs the checkpoint's remote processor API, which these tests show."""
import functools
import inspect
import random

import pytest
from PIL import Image

from swift_ext.families import family_of
from swift_ext.geometry import Clamp, GeometryError
from swift_ext.settings import default_settings
from swift_ext.testing import contract

_sizes = functools.partial(contract.factor_sizes, factor=28, tiny_top=60, tall=70)

TEMPLATES = ('ernie_vl_geo', 'ernie_vl_thinking_geo')
LIMITS = [  # (min_pixels, max_pixels)
    (56 * 56, 28 * 28 * 6177),  # the port's and the remote processor's defaults
    (56 * 56, 28 * 28 * 1280),  # the remote processor's `size` default before min/max override it
    (200704, 401408),  # a narrow band: both branches often
    (0, 28 * 28 * 64),  # no floor: a zero side is possible
]


@pytest.mark.parametrize('min_pixels,max_pixels', LIMITS)
def test_resize_parity_with_transformers_over_thousands_of_sizes(min_pixels, max_pixels):
    from transformers.models.ernie4_5_vl_moe import image_processing_ernie4_5_vl_moe as tv
    from transformers.models.ernie4_5_vl_moe import image_processing_pil_ernie4_5_vl_moe as pil
    sizes = _sizes(3000 if min_pixels == LIMITS[0][0] and max_pixels == LIMITS[0][1] else 1000, seed=max_pixels)
    # the torchvision and the PIL image processor each carry a copy
    mismatches, outcomes = contract.zero_floor_parity((tv, pil), sizes, factor=28, min_pixels=min_pixels,
                                                      max_pixels=max_pixels)
    assert mismatches == [], f'{len(mismatches)} of {len(sizes)}: {mismatches[:3]}'
    if (min_pixels, max_pixels) == LIMITS[0]:
        assert outcomes == {None, Clamp.MIN_PIXELS, Clamp.MAX_PIXELS, 'refused'}


def test_token_count_is_the_processors_patch_count_over_the_merge():
    import transformers as tf
    ip = tf.Ernie4_5_VLMoeImageProcessor()
    settings = default_settings('ernie_vl_geo')
    assert contract.assert_token_parity(ip, settings, _sizes(1500, seed=7)) > 1100


_RNG = random.Random(3)
REAL_SIZES = [(1, 1), (10, 1000), (50, 60), (640, 480), (1000, 40), (3000, 2000), (5000, 4000)] + [
    (_RNG.randint(1, 2500), _RNG.randint(1, 2500)) for _ in range(13)]


@pytest.mark.parametrize('size', [s for s in REAL_SIZES if max(s) / min(s) <= 200])
def test_geometry_is_what_the_processor_does_to_a_real_image(size):
    import transformers as tf
    out = tf.Ernie4_5_VLMoeImageProcessor()(images=[Image.new('RGB', size, (200, 30, 30))], return_tensors='pt')
    geo, _ = default_settings('ernie_vl_geo').predict(width=size[0], height=size[1])
    t, gh, gw = geo.grid
    assert out['image_grid_thw'][0].tolist() == [t, gh, gw]
    assert out['pixel_values'].shape[0] == gh * gw  # one row per 14-pixel patch
    assert (geo.resized_width, geo.resized_height) == (gw * 14, gh * 14)


@pytest.mark.parametrize('size,clamp', [((640, 480), None), ((20, 30), Clamp.MIN_PIXELS),
                                        ((10, 1000), Clamp.MIN_PIXELS),  # the 10-pixel side rounds to 0
                                        ((4000, 3000), Clamp.MAX_PIXELS)])
def test_clamp_names(size, clamp):
    geo, clamped = default_settings('ernie_vl_geo').predict(width=size[0], height=size[1])
    assert clamped == clamp


def test_an_aspect_ratio_over_200_is_refused_as_the_processor_refuses_it():
    with pytest.raises(GeometryError, match='aspect ratio over 200'):
        default_settings('ernie_vl_geo').predict(width=2, height=402, name='strip.png')
    default_settings('ernie_vl_geo').predict(width=2, height=400)  # exactly 200: kept


def test_the_row_max_pixels_prerescales_first():
    geo, clamped = default_settings('ernie_vl_geo').predict(width=1280, height=960, row_kwargs={'max_pixels': 50176})
    # ms-swift's rescale_image to 258x193 first, then the processor's rounding to 28.
    assert (geo.original_width, geo.resized_width, geo.resized_height, clamped) == (1280, 252, 196, Clamp.MAX_PIXELS)


def test_settings_from_template_read_the_live_processor():
    from types import SimpleNamespace

    import transformers as tf

    from swift_ext.families.ernie_vl import ErnieVL
    ip = tf.Ernie4_5_VLMoeImageProcessor(size={'shortest_edge': 1000, 'longest_edge': 400000})
    settings = ErnieVL.settings_from_template(SimpleNamespace(processor=SimpleNamespace(image_processor=ip)),
                                              default_settings('ernie_vl_geo'))
    assert (settings.min_pixels, settings.max_pixels, settings.patch_size, settings.merge_size) == (1000, 400000, 14, 2)


def test_the_templates_need_the_checkpoints_remote_processor():
    # Why the verification is published_code: ms-swift 4.6's ERNIE_VLTemplate reads the remote
    # Ernie4_5_VLProcessor's outputs; transformers' port returns other keys.
    import transformers as tf
    from swift.template import TEMPLATE_MAPPING
    from swift.template.templates.baidu import ERNIE_VLTemplate
    source = inspect.getsource(ERNIE_VLTemplate._encode)
    assert "new_inputs['token_type_ids']" in source and "new_inputs['position_ids']" in source
    assert "'images', 'grid_thw', 'image_type_ids'" in inspect.getsource(ERNIE_VLTemplate._data_collator)
    assert "assert media_type == 'image'" in inspect.getsource(ERNIE_VLTemplate.replace_tag)  # video: refused
    out = tf.Ernie4_5_VLMoeImageProcessor()(images=[Image.new('RGB', (64, 64))], return_tensors='pt')
    assert set(out) == {'pixel_values', 'image_grid_thw'}
    for name in TEMPLATES:
        assert TEMPLATE_MAPPING[name[:-4]].template_cls is ERNIE_VLTemplate
        _, spec = family_of(name)
        assert spec.verification == 'published_code' and spec.model_type is None and not spec.boxes_trained
        assert default_settings(name).box_styles == ('bare_list',)
