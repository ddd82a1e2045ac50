"""LLaVA-OneVision-1.5 / -2 (``llava_onevision1_5`` family): qwen-vl-utils' resize with these templates' own
limits, pinned to ``qwen_vl_utils.smart_resize`` over thousands of sizes and to real encodes of ms-swift's
``LLaVAOneVision1_5Template`` / ``LLaVAOneVision2Template`` (tiny Qwen2.5-VL processor)."""
import functools
import random

import pytest
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_of
from swift_ext.geometry import Clamp, GeometryError
from swift_ext.images import image_key
from swift_ext.settings import default_settings, settings_for
from swift_ext.store import STORE, row_limits_key
from swift_ext.testing import contract

_sample = functools.partial(contract.sample, answer='here')

PARENTS = ('llava_onevision1_5', 'llava_onevision2')


@pytest.fixture(scope='module')
def proc(tiny_processor):
    return tiny_processor('llava_onevision1_5')


def _sizes(n, seed):
    rng = random.Random(seed)
    out = {(w, h) for w in range(1, 40, 3) for h in range(1, 40, 3)}
    out |= {(s, s * r + d) for s in (1, 2, 5, 14) for r in (150, 199, 200, 201, 260) for d in (-1, 0, 1)}
    return contract.filled(out, n, rng, 12000)


def test_resize_parity_with_qwen_vl_utils_over_thousands_of_sizes():
    from qwen_vl_utils import smart_resize
    settings = default_settings('llava_onevision1_5_geo')
    assert (settings.patch_size, settings.min_pixels, settings.max_pixels) == (14, 4 * 28 ** 2, 16384 * 28 ** 2)
    sizes = _sizes(4000, seed=3)
    mismatches, refused = [], 0
    for w, h in sizes:
        try:
            th, tw = smart_resize(h, w, factor=28, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
        except ValueError:
            refused += 1
            with pytest.raises(GeometryError):
                settings.predict(width=w, height=h)
            continue
        geo, _ = settings.predict(width=w, height=h)
        if (geo.resized_width, geo.resized_height, geo.num_tokens) != (tw, th, tw * th // 28 ** 2):
            mismatches.append(((w, h), (geo.resized_width, geo.resized_height), (tw, th)))
    assert mismatches == [], f'{len(mismatches)} of {len(sizes)}: {mismatches[:3]}'
    assert refused > 20  # the 200:1 rule was exercised


def test_no_environment_variable_applies():
    # The LLaVA-OneVision loaders never turn MAX_PIXELS into qwen-vl-utils' limits (only Qwen's loaders do).
    env = {'MAX_PIXELS': '50176', 'MIN_PIXELS': '100000', 'IMAGE_MAX_TOKEN_NUM': '64'}
    for parent in PARENTS:
        assert settings_for(parent + '_geo', env=env) == default_settings(parent + '_geo')
        assert family_of(parent)[0].env_vars == ()


@pytest.mark.parametrize('size,clamp', [((640, 480), None), ((20, 20), Clamp.MIN_PIXELS),
                                        ((6000, 4000), Clamp.MAX_PIXELS)])
def test_clamp_names(size, clamp):
    assert default_settings('llava_onevision2_geo').predict(width=size[0], height=size[1])[1] == clamp


@pytest.mark.parametrize('parent', PARENTS)
def test_encode_identical_and_geometry_is_what_fetch_image_did(proc, tmp_path, parent):
    from qwen_vl_utils import fetch_image
    base, geo_tpl = contract.template(proc, parent), contract.template(proc, parent + '_geo')
    sizes = ((640, 480), (30, 30), (1000, 40), (300, 500))
    paths = [contract.save_image(tmp_path, w, h, (200, 30, 30)) for w, h in sizes]
    for group in (paths[:1], paths[1:]):
        a, b = base.encode(_sample(group)), geo_tpl.encode(_sample(group))
        contract.assert_same_encode(a, b)
        runs = [len(r) for r in ''.join('x' if t == 151655 else ' ' for t in b['input_ids']).split()]
        for i, path in enumerate(group):
            geo = STORE.get(image_key(path), (None, None), parent + '_geo')
            fetched = fetch_image({'image': path})  # what replace_tag calls: no limits, no patch size
            assert (geo.resized_width, geo.resized_height) == fetched.size
            assert list(geo.grid) == b['image_grid_thw'][i].tolist()
            assert geo.num_tokens == runs[i]
            assert geo == geo_tpl.geo_settings().predict(width=Image.open(path).width,
                                                        height=Image.open(path).height)[0]


def test_row_max_pixels_prescales_and_fetch_image_ignores_it(proc, tmp_path):
    # Template._get_max_pixels: the row's max_pixels goes to ms-swift's rescale_image, not to fetch_image.
    from qwen_vl_utils import fetch_image
    from swift.template.vision_utils import load_image, rescale_image
    tpl = contract.template(proc, 'llava_onevision1_5_geo')
    path = contract.save_image(tmp_path, 1280, 960, (200, 30, 30))
    encoded = tpl.encode(_sample([path], chat_template_kwargs={'max_pixels': 50176}))
    geo = STORE.get(image_key(path), row_limits_key({'max_pixels': 50176}), 'llava_onevision1_5_geo')
    expected = fetch_image({'image': rescale_image(load_image(path), 50176)}).size
    assert (geo.resized_width, geo.resized_height) == expected
    assert encoded['image_grid_thw'][0].tolist() == [1, expected[1] // 14, expected[0] // 14]
    assert geo == tpl.geo_settings().predict(width=1280, height=960, row_kwargs={'max_pixels': 50176})[0]


def test_refused_where_the_parent_refuses(proc, tmp_path):
    path = contract.save_image(tmp_path, 3, 700, (200, 30, 30))
    for name in ('llava_onevision1_5', 'llava_onevision1_5_geo'):
        with pytest.raises(ValueError, match='aspect ratio'):
            contract.template(proc, name).encode(_sample([path]))


def test_settings_for_without_template_are_the_live_ones(proc):
    for parent in PARENTS:
        contract.assert_published_settings(proc, parent + '_geo')


def test_an_engine_encode_keeps_the_prediction():
    # Unlike Qwen's templates, these hand an engine the image as loaded: its geometry is the prediction, not the
    # grid of a replace_tag size (Family.handed, past Qwen's HandsResizedImage mixin).
    from swift_ext.families import family_of
    from swift_ext.families.base import ImageEntry
    from swift_ext.settings import default_settings
    geo, _ = default_settings('llava_onevision1_5_geo').predict(width=640, height=480)
    entry = ImageEntry(key='k', name='x.png', size=(640, 480), resized=(644, 476))
    assert family_of('llava_onevision1_5')[0].handed(None, {}, [entry], [geo]) == ([geo], 'prediction')
