"""Idefics3: the family's prediction equals transformers' resize / resize_for_vision_encoder / split
arithmetic for thousands of sizes, `_geo` encodes are byte-identical to the parent's, and the recorded
geometry is what the real processor produced."""
import math
import random

import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_named
from swift_ext.families.idefics3 import IMAGE_TOKEN_ID, image_tiles, vision_encoder_size
from swift_ext.geometry import Clamp
from swift_ext.images import image_key
from swift_ext.store import STORE
from swift_ext.testing import contract

SIZES = [(640, 480), (50, 60), (300, 2000), (1000, 40), (364, 364), (2000, 3000)]


@pytest.fixture(scope='module')
def processor(tiny_processor):
    return tiny_processor('idefics3')


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    return contract.write_images(tmp_path_factory.mktemp('idefics3_images'), SIZES, boxed=True)


def _settings(**overrides):
    return family_named('idefics3').settings_for('idefics3', env={}, overrides=overrides)


def _random_sizes(n, seed):
    """Sizes from 1 pixel to 9k a side, extreme ratios, and sides near multiples of 364."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.35:
            w, h = rng.randint(1, 5000), rng.randint(1, 5000)
        elif kind < 0.55:
            w, h = rng.randint(1, 40), rng.randint(1, 9000)
        elif kind < 0.8:
            w, h = rng.randint(300, 1500), rng.randint(300, 1500)
        else:
            w, h = 364 * rng.randint(1, 8) + rng.randint(-2, 2), rng.randint(1, 3000)
        out.append((w, h) if rng.random() < 0.5 else (h, w))
    return out


def _processor_sizes(ip, h, w):
    """(height, width) after the processor's two resizes, read from real (zero-channel) tensors."""
    from transformers.image_utils import SizeDict
    first = ip.resize(torch.empty(1, 0, h, w), SizeDict(longest_edge=ip.size['longest_edge']))
    return tuple(ip.resize_for_vision_encoder(first, ip.max_image_size['longest_edge']).shape[-2:])


def test_predict_matches_processor_resizes(processor):
    # 6,000 sizes: the resized size is the processor's; tiles = its split; tokens = 169 a view.
    ip = processor.image_processor
    settings = _settings()
    mismatches = []
    for w, h in _random_sizes(6000, seed=3):
        geo, _ = settings.predict(width=w, height=h)
        rh, rw = _processor_sizes(ip, h, w)
        patches, rows, cols = ip.get_number_of_image_patches(h, w)
        want = (rw, rh, math.ceil(rh / 364), math.ceil(rw / 364), patches, patches * processor.image_seq_len)
        got = (geo.resized_width, geo.resized_height, geo.tile_rows, geo.tile_cols, geo.num_tiles, geo.num_tokens)
        if got != want or (rows, cols) != (geo.tile_rows, geo.tile_cols):
            mismatches.append(((w, h), got, want))
    assert mismatches == []


def test_vision_encoder_size_every_first_resize(processor):
    # After the first resize the long side is 1456: every (1456, s) / (s, 1456), s = 1..1456 (2,912 shapes).
    ip = processor.image_processor
    bad = []
    for side in range(1, 1457):
        for h, w in ((side, 1456), (1456, side)):
            real = tuple(ip.resize_for_vision_encoder(torch.empty(1, 0, h, w), 364).shape[-2:])
            if real != vision_encoder_size(height=h, width=w, tile=364):
                bad.append((h, w, real))
    assert bad == []


@pytest.mark.parametrize('size', [(640, 480), (300, 2000), (1000, 40)])
def test_split_images_on_real_pixels(processor, size):
    # The real processor on real pixels: views in pixel_values and rows / cols.
    ip = processor.image_processor
    out = ip(Image.new('RGB', size), return_row_col_info=True, return_tensors='pt')
    geo, _ = _settings().predict(width=size[0], height=size[1])
    assert out['pixel_values'].shape[1] == geo.num_tiles
    assert (out['rows'][0][0], out['cols'][0][0]) == (geo.tile_rows, geo.tile_cols)


def test_no_splitting_is_one_squashed_view():
    geo, clamp = _settings(do_image_splitting=False).predict(width=640, height=480)
    assert (geo.resized_width, geo.resized_height, geo.num_tiles, geo.num_tokens) == (364, 364, 1, 169)
    assert clamp == Clamp.CANVAS_FIT


@pytest.mark.parametrize('size,clamp', [
    ((30, 30), Clamp.UPSCALE),  # its longest side set to 1456: 48x, 16 tiles + the global image
    ((640, 480), Clamp.UPSCALE),  # 1456x1092: every image under 1456 is grown
    ((1456, 1092), None),
    ((1456, 1000), None),  # 1000 ceiled to 1092 (3 tiles): the model's rounding to whole tiles
    ((4000, 3000), Clamp.LONGEST_EDGE),
])
def test_clamp_names_what_the_processor_did(processor, size, clamp):
    # The processor's first resize (longest edge to 1456) decides the name; its ceil to tiles is rounding.
    from transformers.image_utils import SizeDict
    ip = processor.image_processor
    w, h = size
    first = ip.resize(torch.empty(1, 0, h, w), SizeDict(longest_edge=ip.size['longest_edge'])).shape[-2:]
    geo, clamped = _settings().predict(width=w, height=h)
    assert (geo.resized_height, geo.resized_width) == _processor_sizes(ip, h, w) and clamped == clamp
    assert (clamped == Clamp.UPSCALE) == (max(first) > max(size))
    assert (clamped == Clamp.LONGEST_EDGE) == (max(first) < max(size))


def test_encode_identical_to_parent(processor, images):
    groups = ([(640, 480)], [(50, 60), (1000, 40)], [(300, 2000), (364, 364)])
    contract.assert_encodes_as_parent(processor, 'idefics3', [[images[s] for s in g] for g in groups])


def test_recorded_geometry_is_prediction_and_processor(processor, images):
    tpl = contract.template(processor, 'idefics3_geo')
    paths = [images[s] for s in SIZES]
    encoded = tpl.encode(contract.sample(paths))
    real = processor.image_processor([[Image.open(p).convert('RGB') for p in paths]], return_row_col_info=True,
                                     return_tensors='pt')
    tiles = image_tiles(encoded['input_ids'], decode=processor.tokenizer.decode, seq_len=169)
    assert encoded['pixel_values'].shape[1] == real['pixel_values'].shape[1] == sum(t[0] for t in tiles)
    for i, path in enumerate(paths):
        geo = STORE.get(image_key(path), (None, None), 'idefics3_geo')
        assert geo == tpl.geo_settings().predict(width=SIZES[i][0], height=SIZES[i][1])[0], path
        rows, cols = real['rows'][0][i], real['cols'][0][i]
        assert (geo.tile_rows, geo.tile_cols, geo.num_tiles) == (rows, cols, rows * cols + 1) == tiles[i][1:] + (
            tiles[i][0],)
    assert sum(1 for t in encoded['input_ids'] if t == IMAGE_TOKEN_ID) == sum(
        STORE.get(image_key(p), (None, None), 'idefics3_geo').num_tokens for p in paths)


def test_swift_max_pixels_and_row_limit(processor, images):
    # --max_pixels (or a row's chat_template_kwargs.max_pixels) shrinks first with ms-swift's
    # rescale_image; the processor then scales the long side back up to 1456.
    from swift.template.vision_utils import rescale_image
    path = images[(2000, 3000)]
    for tpl, row in ((contract.template(processor, 'idefics3_geo', max_pixels=50176), {}),
                     (contract.template(processor, 'idefics3_geo'), {'max_pixels': 50176})):
        tpl.encode({**contract.sample([path]), 'chat_template_kwargs': row})
        geo = STORE.get(image_key(path), (None, row.get('max_pixels')), 'idefics3_geo')
        predicted, clamped = tpl.geo_settings().predict(width=2000, height=3000, row_kwargs=row)
        assert geo == predicted and clamped == 'max_pixels'
        small = rescale_image(Image.open(path), 50176)
        rh, rw = _processor_sizes(processor.image_processor, small.height, small.width)
        assert (geo.resized_width, geo.resized_height) == (rw, rh)


def test_image_tiles_needs_whole_views():
    # A run that is not 169 tokens long is not a view: nothing is read from such an encode.
    def decode(ids):
        return ''.join({1: '<row_1_col_1>', 2: '<global-img>'}.get(i, 'x') for i in ids)
    v = [IMAGE_TOKEN_ID] * 169
    assert image_tiles([1] + v + [2] + v, decode=decode, seq_len=169) == [(2, 1, 1)]
    assert image_tiles([1] + v[:-1] + [2] + v, decode=decode, seq_len=169) is None
    assert image_tiles([1] + v, decode=decode, seq_len=169) is None
