"""Phi-4-multimodal geometry, pinned to transformers' ``Phi4MultimodalImageProcessor`` (the port of the hub
processor's dynamic-HD arithmetic): its ratio choice over thousands of sizes, its ``dynamic_preprocess`` on
hundreds, the full processor on tens; and an encode through ms-swift's real ``phi4_multimodal`` template
(with the tiny checkpoint's stand-in remote processor) byte-identical to the parent and recorded."""
import functools
import random

import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_of
from swift_ext.families.phi4_multimodal import closest_ratio, hd_content, hd_grid, hd_mask, target_ratios
from swift_ext.geometry import Clamp, GeometryError
from swift_ext.images import image_key
from swift_ext.settings import default_settings
from swift_ext.store import STORE
from swift_ext.testing import contract

_sample = functools.partial(contract.sample, prompt='Where is the box?')

PARENT = 'phi4_multimodal'


@pytest.fixture(scope='module')
def native():
    from transformers import Phi4MultimodalImageProcessor
    return Phi4MultimodalImageProcessor()  # dynamic_hd 36, size 448, patch 14: the published checkpoint's


def _sizes(n, seed, top):
    rng = random.Random(seed)
    out = {(w, h) for w in (1, 2, 9, 10, 11, 14, 15) for h in (1, 10, 448, 449, 3000)}
    out |= {(448 * a + d, 448 * b + e) for a in (1, 2, 3) for b in (1, 2) for d in (-1, 0, 1) for e in (-1, 0, 1)}
    return contract.filled(out, n, rng, top)


@pytest.mark.parametrize('max_num', [36, 16, 4, 2])
def test_closest_ratio_parity_with_transformers(native, max_num):
    # The one non-trivial choice, on 3,000 sizes per cap: transformers' find_closest_aspect_ratio, fed the
    # candidates in the order built here (the order itself is pinned by the dynamic_preprocess test below).
    mismatches = [(w, h) for w, h in _sizes(3000, seed=max_num, top=20000)
                  if closest_ratio(width=w, height=h, max_num=max_num, crop_size=448)
                  != native.find_closest_aspect_ratio(w / h, list(target_ratios(max_num)), w, h, 448)]
    assert mismatches == [], mismatches[:5]


def _preprocess(native, width, height, max_num):
    """transformers' dynamic_preprocess on a black image: the canvas, the content (not the white padding),
    the unmasked mask extent."""
    resized, mask = native.dynamic_preprocess(torch.zeros(3, height, width, dtype=torch.uint8), 448, 14, 32,
                                              max_num=max_num)
    ys, xs = torch.nonzero(resized.amin(0) < 255, as_tuple=True)
    return ((resized.shape[-1] // 448, resized.shape[-2] // 448), (int(xs.max()) + 1, int(ys.max()) + 1),
            (int(mask[0].sum()), int(mask[:, 0].sum())), int(xs.min()) + int(ys.min()))


@pytest.mark.parametrize('max_num', [36, 9, 4, 1])
def test_dynamic_preprocess_parity(native, max_num):
    # Small files (a few milliseconds each) reach every branch once the crop cap is low.
    settings = default_settings(PARENT + '_geo')
    mismatches = []
    for w, h in _sizes(120, seed=100 + max_num, top=1400):
        grid = hd_grid(width=w, height=h, max_num=max_num, crop_size=448)
        content = hd_content(width=w, height=h, cols=grid[0], rows=grid[1], crop_size=448)
        if min(content) < 10:
            with pytest.raises(ValueError, match='aspect ratio is very extreme'):
                _preprocess(native, w, h, max_num)
            continue
        mask = hd_mask(content_w=content[0], content_h=content[1], cols=grid[0], rows=grid[1], crop_size=448,
                       patch_size=14)
        got = (grid, content, mask, 0)
        if got != _preprocess(native, w, h, max_num):
            mismatches.append(((w, h), got, _preprocess(native, w, h, max_num)))
    assert mismatches == [], mismatches[:5]
    assert settings.dynamic_hd == 36


@pytest.mark.parametrize('size', [(50, 60), (448, 448), (449, 448), (640, 480), (1000, 300), (2000, 300),
                                  (300, 1700), (3000, 2000), (5000, 40), (60, 8000), (1200, 100)])
def test_prediction_is_what_the_processor_does(native, size):
    # The full processor on a grey image: its token count, its canvas, its views, where the content sits.
    geo, _ = default_settings(PARENT + '_geo').predict(width=size[0], height=size[1])
    out = native(images=[Image.new('RGB', size, (120, 120, 120))], return_tensors='pt')
    assert out['num_img_tokens'].tolist() == [geo.num_tokens]
    assert out['image_sizes'][0].tolist() == [geo.canvas_height, geo.canvas_width]
    views = out['image_pixel_values'][0]
    assert views.shape[0] == geo.num_tiles == geo.tile_cols * geo.tile_rows + 1
    canvas = torch.zeros(3, geo.canvas_height, geo.canvas_width)
    for i in range(geo.tile_cols * geo.tile_rows):
        r, c = divmod(i, geo.tile_cols)
        canvas[:, r * 448:(r + 1) * 448, c * 448:(c + 1) * 448] = views[1 + i]  # the global view first
    ys, xs = torch.nonzero((canvas - 1).abs().amax(0) > 1e-3, as_tuple=True)  # white padding is 1.0
    assert [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] == \
        [0, 0, geo.resized_width, geo.resized_height], size


@pytest.mark.parametrize('size', [(1, 5000), (9, 3000), (20000, 3)])
def test_extreme_ratios_are_refused_as_the_processor_refuses(native, size):
    with pytest.raises(ValueError, match='aspect ratio is very extreme'):
        native(images=[Image.new('RGB', size)], return_tensors='pt')
    with pytest.raises(GeometryError, match=r'thin\.png: fitting .* a side under 10 pixels'):
        default_settings(PARENT + '_geo').predict(width=size[0], height=size[1], name='thin.png')


@pytest.mark.parametrize('size,clamp', [
    ((50, 60), Clamp.UPSCALE),  # grown until its height fills one crop (373 x 448)
    ((896, 448), None),  # exactly two crops
    ((640, 480), Clamp.UPSCALE),  # grown to fill a 2 x 2 canvas's width
    ((8000, 6000), Clamp.CANVAS_FIT),  # shrunk into 4 x 3 crops (the 4:3 ratio at most 36 crops)
])
def test_clamp_names_what_the_processor_did(size, clamp):
    geo, clamped = default_settings(PARENT + '_geo').predict(width=size[0], height=size[1])
    assert clamped == clamp


def test_swift_max_pixels_prescale_comes_first():
    geo, plain, (w, h) = contract.assert_prescaled_first(PARENT + '_geo')
    assert (geo.resized_width, geo.num_tokens) == (plain.resized_width, plain.num_tokens)


def test_every_template_on_the_class_is_covered():
    from swift.template.templates.microsoft import Phi4MMTemplate
    parents = contract.parents_on_class(Phi4MMTemplate)
    assert parents == {PARENT}
    family, spec = family_of(PARENT)
    assert family.name == 'phi4_multimodal' and spec.verification == 'published_code' and not spec.boxes_trained


# --------------------------------------------------------------------------- real encodes
@pytest.fixture(scope='module')
def processor(tiny_processor):
    return tiny_processor(PARENT)


def test_settings_from_the_checkpoint_equal_the_published_ones(processor):
    contract.assert_published_settings(processor, PARENT + '_geo')


def test_encode_identical_and_recorded(processor, tmp_path):
    parent, geo_tpl = contract.template(processor, PARENT), contract.template(processor, PARENT + '_geo')
    settings = geo_tpl.geo_settings()
    # Two images side by side make one run of <|endoftext10|>: the record takes each image's own count.
    for group in ([(640, 480)], [(50, 60)], [(2000, 300), (300, 1700)]):
        paths = [contract.save_image(tmp_path, w, h) for w, h in group]
        expected, encoded = parent.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
        contract.assert_same_encode(expected, encoded)
        geos = [STORE.get(image_key(p), (None, None), PARENT + '_geo') for p in paths]
        for i, (geo, size) in enumerate(zip(geos, group, strict=True)):
            assert geo == settings.predict(width=size[0], height=size[1])[0]
            assert encoded['image_sizes'][i].tolist() == [geo.canvas_height, geo.canvas_width]
        assert encoded['input_ids'].count(200010) == sum(g.num_tokens for g in geos) == sum(encoded['num_img_tokens'])


def test_actual_reads_the_encode_when_the_processor_changed(processor, tmp_path):
    # Settings are read once; a processor changed afterwards crops differently: the record follows the encode.
    from swift_ext.warn import reset_warnings
    tpl = contract.template(processor, PARENT + '_geo')
    path = contract.save_image(tmp_path, 3000, 500)
    ip = tpl.processor.image_processor
    reset_warnings()
    try:
        ip.dynamic_hd = 4
        encoded = tpl.encode(_sample([path]))
        real = ip(images=[Image.open(path).convert('RGB')], return_tensors='pt')
    finally:
        ip.dynamic_hd = 36
    geo = STORE.get(image_key(path), (None, None), PARENT + '_geo')
    assert encoded['num_img_tokens'] == real['num_img_tokens'].tolist() == [geo.num_tokens]
    assert real['image_sizes'][0].tolist() == [geo.canvas_height, geo.canvas_width] == [448, 1792]
    assert (geo.tile_cols, geo.tile_rows, geo.resized_width, geo.resized_height) == (4, 1, 1792, 298)


def test_tiny_tokenizer_has_the_real_ids(tiny_model):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model(PARENT))
    # microsoft/Phi-4-multimodal-instruct's ids, written out here rather than read from the recipe.
    for token, token_id in {'<|endoftext|>': 199999, '<|endoftext10|>': 200010, '<|endoftext11|>': 200011,
                            '<|assistant|>': 200019, '<|end|>': 200020, '<|user|>': 200021,
                            '<|system|>': 200022}.items():
        assert tok.encode(token, add_special_tokens=False) == [token_id], token
    assert tok.encode('\n', add_special_tokens=False) == [198]  # Phi4MMTemplate splits on 198
