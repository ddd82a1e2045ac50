"""Gemma 3 and Gemma 4 families: predictions equal transformers' own arithmetic on thousands of sizes
(Gemma 3's pan-and-scan crops, Gemma 4's aspect-kept soft-token budget), and a real encode through
each `_geo` template is byte-identical to its ms-swift parent and records what the processor did."""
import functools
import random

import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_named
from swift_ext.families.gemma3 import pan_and_scan_grid
from swift_ext.families.gemma4 import GEMMA4_MAX_SOFT_TOKENS, SUPPORTED_SOFT_TOKENS, gemma4_resize
from swift_ext.geometry import Clamp, GeometryError
from swift_ext.images import image_key
from swift_ext.store import STORE
from swift_ext.testing import contract

_sample = functools.partial(contract.sample, prompt='Where is the box?')

GEMMA4 = ('gemma4', 'gemma4_nothinking')


def _sizes(n, seed):
    """Random (width, height): log-uniform sides, extreme ratios, tiny sides, square-ish boundaries."""
    rng = random.Random(seed)
    out = [(1, 1), (1, 10000), (10000, 1), (256, 256), (307, 256), (308, 256), (512, 256), (255, 600)]
    for _ in range(n):
        kind = rng.random()
        if kind < 0.15:  # extreme aspect ratios
            out.append((rng.randint(1, 30), rng.randint(300, 20000))[::rng.choice([1, -1])])
        elif kind < 0.3:  # near the pan-and-scan activation ratio 1.2 and the 256-pixel crop floor
            h = rng.randint(100, 2000)
            out.append((int(h * rng.uniform(1.1, 1.3)), h)[::rng.choice([1, -1])])
        else:
            out.append((int(10 ** rng.uniform(0, 4)), int(10 ** rng.uniform(0, 4))))
    return [(max(1, w), max(1, h)) for w, h in out]


# ------------------------------------------------------------------------- Gemma 3 arithmetic
def _hf_pan_and_scan(width, height, min_crop, max_crops, min_ratio):
    """(number of crops, (height, width) of the first crop) as transformers cuts them."""
    from transformers import Gemma3ImageProcessor
    image = torch.zeros(1).expand(1, 3, height, width)  # a shape, no pixels
    crops = Gemma3ImageProcessor().pan_and_scan_batched(image, min_crop, max_crops, min_ratio)
    return len(crops), tuple(crops[0].shape[-2:]) if crops else None


@pytest.mark.parametrize('min_crop,max_crops,min_ratio', [(256, 4, 1.2), (128, 8, 1.5), (256, 2, 1.0)])
def test_pan_and_scan_parity_with_transformers(min_crop, max_crops, min_ratio):
    # 2,000 sizes per setting: the same number of crops, the first crop ceil(side / count) pixels.
    mismatches = []
    for w, h in _sizes(2000, seed=min_crop + max_crops):
        cols, rows = pan_and_scan_grid(width=w, height=h, min_crop_size=min_crop, max_num_crops=max_crops,
                                       min_ratio=min_ratio)
        ours = (cols * rows, (-(-h // rows), -(-w // cols)) if cols else None)
        if ours != _hf_pan_and_scan(w, h, min_crop, max_crops, min_ratio):
            mismatches.append((w, h, ours))
    assert mismatches == [], mismatches[:10]


def test_gemma3_prediction_is_fixed():
    # No pan-and-scan through ms-swift: every image is 896x896, 256 tokens, one tile; stretched to it, so
    # grown (upscale) where no side is over 896, fitted (canvas_fit) where one is.
    settings = family_named('gemma3').default_settings('gemma3_vision')
    for w, h in _sizes(500, seed=3):
        geo, clamped = settings.predict(width=w, height=h)
        assert (geo.resized_width, geo.resized_height, geo.num_tokens, geo.num_tiles) == (896, 896, 256, 1)
        fitted = None if (w, h) == (896, 896) else Clamp.UPSCALE if max(w, h) <= 896 else Clamp.CANVAS_FIT
        assert (geo.original_width, geo.original_height, clamped) == (w, h, fitted)


@pytest.mark.parametrize('size,clamp', [
    ((30, 30), Clamp.UPSCALE),  # an icon blown up 30x to the fixed square
    ((896, 896), None),
    ((4000, 3000), Clamp.CANVAS_FIT),
    ((2000, 400), Clamp.CANVAS_FIT),  # squashed on one axis, stretched on the other: fitted, not upscaled
])
def test_gemma3_clamp_names_what_the_image_processor_did(checkpoints, size, clamp):
    from transformers import AutoProcessor
    ip = AutoProcessor.from_pretrained(checkpoints['gemma3_vision']).image_processor
    out = ip(images=[Image.new('RGB', size)], return_tensors='pt')['pixel_values']
    real = (int(out.shape[-1]), int(out.shape[-2]))
    geo, clamped = family_named('gemma3').default_settings('gemma3_vision').predict(width=size[0], height=size[1])
    assert (geo.resized_width, geo.resized_height) == real and clamped == clamp
    grew = real[0] >= size[0] and real[1] >= size[1] and real != size
    assert (clamped == Clamp.UPSCALE) == grew
    assert geo.max_scale == pytest.approx(max(real[0] / size[0], real[1] / size[1]))


@pytest.mark.parametrize('size,clamp', [
    ((30, 30), Clamp.UPSCALE),  # scaled up to about 280 soft tokens: 768x768
    ((768, 768), None),  # already a budget-sized multiple of 48
    ((4000, 3000), Clamp.MAX_SOFT_TOKENS),
    ((3000, 50), Clamp.UPSCALE),  # a strip grown 2x to fill the budget: 6192x96
    ((12000, 200), Clamp.MAX_SOFT_TOKENS),  # the same strip, larger: 6192x96 again
])
def test_gemma4_clamp_names_what_the_resize_did(size, clamp):
    real = _hf_gemma4(*size, GEMMA4_MAX_SOFT_TOKENS)
    _, clamped = family_named('gemma4').default_settings('gemma4').predict(width=size[0], height=size[1])
    assert clamped == clamp
    assert (clamped == Clamp.UPSCALE) == (real[0] >= size[0] and real[1] >= size[1] and real != size)


# ------------------------------------------------------------------------- Gemma 4 arithmetic
def _hf_gemma4(width, height, tokens):
    from transformers.models.gemma4.image_processing_gemma4 import get_aspect_ratio_preserving_size
    try:
        h, w = get_aspect_ratio_preserving_size(height=height, width=width, patch_size=16, max_patches=tokens * 9,
                                                pooling_kernel_size=3)
    except ValueError:
        return 'refused'
    return w, h


def _ours_gemma4(width, height, tokens):
    try:
        return gemma4_resize(width=width, height=height, patch_size=16, max_soft_tokens=tokens, pooling_kernel_size=3)
    except GeometryError:
        return 'refused'


@pytest.mark.parametrize('tokens', SUPPORTED_SOFT_TOKENS)
def test_gemma4_resize_parity_with_transformers(tokens):
    # 2,000 sizes per budget, 10,000 in all: same size, and refused exactly where transformers raises.
    sizes = _sizes(2000, seed=tokens)
    mismatches = [(w, h) for w, h in sizes if _ours_gemma4(w, h, tokens) != _hf_gemma4(w, h, tokens)]
    assert mismatches == [], mismatches[:10]


def test_gemma4_tokens_equal_processor_count(checkpoints):
    # transformers' Gemma4Processor._get_num_multimodal_tokens, for the default 280-token budget.
    from transformers import AutoProcessor
    proc = AutoProcessor.from_pretrained(checkpoints['gemma4'])
    settings = family_named('gemma4').default_settings('gemma4')
    sizes = _sizes(1000, seed=11)
    expected = proc._get_num_multimodal_tokens(image_sizes=[(h, w) for w, h in sizes])['num_image_tokens']
    assert [settings.predict(width=w, height=h)[0].num_tokens for w, h in sizes] == expected


def test_every_template_on_the_classes_is_covered():
    from swift.template import TEMPLATE_MAPPING
    from swift.template.templates.gemma import Gemma3VisionTemplate, Gemma4Template
    parents = contract.parents_on_class(Gemma3VisionTemplate, Gemma4Template)
    assert parents == {'gemma3_vision', 'gemma4', 'gemma4_nothinking', 'diffusion_gemma'}
    assert all(p + '_geo' in TEMPLATE_MAPPING for p in parents)


# --------------------------------------------------------------------------- real encodes
@pytest.fixture(scope='module')
def checkpoints(tiny_model):
    return {p: tiny_model(p) for p in ('gemma3_vision', 'gemma4')}


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    sizes = [(50, 60), (640, 480), (2000, 300), (300, 1700), (1000, 20), (900, 900)]
    return contract.write_images(tmp_path_factory.mktemp('gemma_images'), sizes)


GROUPS = ([(640, 480)], [(50, 60), (2000, 300)], [(300, 1700), (1000, 20), (900, 900)])


def _template(checkpoints, name, **kwargs):
    from swift.model import get_processor
    from swift.template import get_template
    parent = name[:-4] if name.endswith('_geo') else name
    key = 'gemma3_vision' if parent == 'gemma3_vision' else 'gemma4'
    proc = get_processor(checkpoints[key], model_type=key)
    tpl = get_template(proc, template_type=name, **kwargs)
    tpl.set_mode('train')
    return tpl


def _runs(ids, token):
    from swift_ext.families.encoded import token_runs
    return token_runs(ids.tolist() if hasattr(ids, 'tolist') else ids, token)


def test_gemma3_encode_identical_and_recorded(checkpoints, images):
    parent, geo_tpl = _template(checkpoints, 'gemma3_vision'), _template(checkpoints, 'gemma3_vision_geo')
    settings = geo_tpl.geo_settings()
    for group in GROUPS:
        paths = [images[s] for s in group]
        expected, encoded = parent.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
        contract.assert_same_encode(expected, encoded)
        real = geo_tpl.processor.image_processor([Image.open(p).convert('RGB') for p in paths], return_tensors='pt')
        assert encoded['pixel_values'].shape[0] == len(paths) == len(real['num_crops'])
        runs = _runs(encoded['input_ids'], 262144)
        for i, (size, path) in enumerate(zip(group, paths, strict=True)):
            geo = STORE.get(image_key(path), (None, None), 'gemma3_vision_geo')
            assert geo == settings.predict(width=size[0], height=size[1])[0]
            assert (geo.resized_height, geo.resized_width) == tuple(real['pixel_values'].shape[-2:]) == (896, 896)
            assert geo.num_tokens == runs[i] == 256 and geo.num_tiles == 1 + int(real['num_crops'][i]) == 1


def test_gemma3_pan_and_scan_is_off_whatever_the_checkpoint_says(checkpoints, images):
    # A checkpoint asking for pan-and-scan: ms-swift passes do_pan_and_scan=False explicitly.
    tpl = _template(checkpoints, 'gemma3_vision_geo')
    tpl.processor.image_processor.do_pan_and_scan = True
    tpl.__dict__.pop('_geo_settings_cache', None)
    path = images[(2000, 300)]
    encoded = tpl.encode(_sample([path]))
    assert tpl.geo_settings().do_pan_and_scan is False
    assert encoded['pixel_values'].shape[0] == 1
    assert STORE.get(image_key(path), (None, None), 'gemma3_vision_geo').num_tiles == 1


def test_gemma3_pan_and_scan_when_the_template_kwargs_enable_it(checkpoints, images, monkeypatch):
    # The only switch: the kwargs dict the template passes. Crops are then the encode's extra pixel rows.
    from transformers.models.gemma3.processing_gemma3 import Gemma3ProcessorKwargs
    monkeypatch.setitem(Gemma3ProcessorKwargs._defaults['images_kwargs'], 'do_pan_and_scan', True)
    tpl = _template(checkpoints, 'gemma3_vision_geo')
    for size in [(2000, 300), (300, 1700), (640, 480)]:
        path = images[size]
        encoded = tpl.encode(_sample([path]))
        geo = STORE.get(image_key(path), (None, None), 'gemma3_vision_geo')
        cols, rows = pan_and_scan_grid(width=size[0], height=size[1], min_crop_size=256, max_num_crops=4,
                                       min_ratio=1.2)
        assert tpl.geo_settings().do_pan_and_scan is True
        assert geo == tpl.geo_settings().predict(width=size[0], height=size[1])[0]
        assert geo.num_tiles == encoded['pixel_values'].shape[0] == 1 + cols * rows
        assert (geo.tile_cols, geo.tile_rows, geo.thumbnail) == ((cols, rows, True) if cols else (None, None, False))


@pytest.mark.parametrize('parent', GEMMA4)
def test_gemma4_encode_identical_and_recorded(checkpoints, images, parent):
    parent_tpl, geo_tpl = _template(checkpoints, parent), _template(checkpoints, parent + '_geo')
    settings = geo_tpl.geo_settings()
    image_processor = geo_tpl.processor.image_processor
    for group in GROUPS:
        paths = [images[s] for s in group]
        expected, encoded = parent_tpl.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
        contract.assert_same_encode(expected, encoded)
        runs = _runs(encoded['input_ids'], geo_tpl.config.image_token_id)
        for i, (size, path) in enumerate(zip(group, paths, strict=True)):
            geo = STORE.get(image_key(path), (None, None), parent + '_geo')
            # The processor on this file alone (not the template's batch): its patch grid and tokens.
            real = image_processor([Image.open(path).convert('RGB')], return_tensors='pt')
            positions = real['image_position_ids'][0]
            cols, rows = (int(v) for v in positions.amax(dim=0) + 1)
            assert geo == settings.predict(width=size[0], height=size[1])[0]
            assert (geo.resized_width, geo.resized_height) == (cols * 16, rows * 16)
            assert geo.num_tokens == runs[i] == int(real['num_soft_tokens_per_image'][0]) == cols * rows // 9


def test_gemma4_swift_max_pixels_prerescale(checkpoints, images):
    from swift.template.vision_utils import load_image, rescale_image
    tpl = _template(checkpoints, 'gemma4_geo', max_pixels=50176)
    path = images[(2000, 300)]
    encoded = tpl.encode(_sample([path]))
    geo = STORE.get(image_key(path), (None, None), 'gemma4_geo')
    shrunk = rescale_image(load_image(path), 50176)
    real = tpl.processor.image_processor([shrunk], return_tensors='pt')
    assert geo == tpl.geo_settings().predict(width=2000, height=300)[0]
    assert geo.num_tokens == int(real['num_soft_tokens_per_image'][0]) == _runs(encoded['input_ids'], 258880)[0]
    assert (geo.original_width, geo.original_height) == (2000, 300)
