"""Llama 4 geometry: parity with transformers' canvas functions over thousands of sizes, with the real
processor (views, content, ``<|patch|>`` expansion) on tens, and a real encode through ``llama4_geo`` that
is byte-identical to ms-swift's parent and records what the encode's token blocks show."""

import functools

import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_of
from swift_ext.families.llama4 import best_grid, fit_without_distortion, image_blocks, supported_grids
from swift_ext.geometry import Clamp
from swift_ext.images import image_key
from swift_ext.settings import default_settings
from swift_ext.store import STORE
from swift_ext.testing import contract

_sample = functools.partial(contract.sample, prompt='Where is the box?')
_sizes = functools.partial(contract.tile_sizes, ratios=(0.25, 0.5, 1, 2, 4))

PARENT = 'llama4'
# (tile size, max_patches, resize_to_max_canvas): the real checkpoints', then off-default processors.
SETTINGS = [(336, 16, False), (336, 16, True), (336, 4, False), (448, 9, False), (224, 1, False)]


def _reference(width, height, tile, max_patches, to_max):
    """transformers' own steps of ``Llama4ImageProcessor._preprocess``: ((rows, cols), content (w, h))."""
    from transformers.image_utils import SizeDict
    from transformers.models.llama4.image_processing_llama4 import (
        find_supported_resolutions,
        get_best_fit,
        get_max_res_without_distortion,
    )
    size = SizeDict(height=tile, width=tile)
    resolutions = torch.tensor(find_supported_resolutions(max_num_chunks=max_patches, patch_size=size))
    canvas_h, canvas_w = (int(v) for v in get_best_fit((height, width), resolutions, resize_to_max_canvas=to_max))
    target = (canvas_h, canvas_w) if to_max else (min(max(height, tile), canvas_h), min(max(width, tile), canvas_w))
    new_h, new_w = get_max_res_without_distortion((height, width), target)
    return (canvas_h // tile, canvas_w // tile), (max(new_w, 1), max(new_h, 1))


@pytest.mark.parametrize('tile,max_patches,to_max', SETTINGS)
def test_canvas_parity_with_transformers(tile, max_patches, to_max):
    # 2,000+ sizes per setting: the canvas get_best_fit picks (float32 scales) and the content fitted into it.
    from transformers.image_utils import SizeDict
    from transformers.models.llama4.image_processing_llama4 import find_supported_resolutions
    resolutions = find_supported_resolutions(max_num_chunks=max_patches, patch_size=SizeDict(height=tile, width=tile))
    assert [(r * tile, c * tile) for r, c in supported_grids(max_patches)] == list(resolutions)
    mismatches = []
    for w, h in _sizes(2000, seed=tile + max_patches, tile=tile):
        rows, cols = best_grid(width=w, height=h, max_patches=max_patches, tile_size=tile, resize_to_max_canvas=to_max)
        if to_max:
            target = (cols * tile, rows * tile)
        else:
            target = (min(max(w, tile), cols * tile), min(max(h, tile), rows * tile))
        got = ((rows, cols), fit_without_distortion(width=w, height=h, target_width=target[0], target_height=target[1]))
        want = _reference(w, h, tile, max_patches, to_max)
        if got != want:
            mismatches.append(((w, h), got, want))
    assert mismatches == [], mismatches[:5]


def _processor():
    from transformers import Llama4ImageProcessor
    return Llama4ImageProcessor(size={'height': 336, 'width': 336}, max_patches=16, resize_to_max_canvas=False,
                                image_mean=[0.5] * 3, image_std=[0.5] * 3)


def _content(pixel_values, rows, cols):
    """``[x1, y1, x2, y2]`` of the non-padding pixels of the tiles laid back into their canvas (padding is -1)."""
    tile = pixel_values.shape[-1]
    canvas = torch.zeros(3, rows * tile, cols * tile)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        canvas[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = pixel_values[i].float()
    ys, xs = torch.nonzero((canvas + 1).abs().amax(0) > 1e-3, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


@pytest.mark.parametrize('size', [(50, 60), (336, 336), (337, 336), (640, 480), (1000, 300), (2000, 300),
                                  (300, 1700), (1500, 1500), (4000, 3000), (5, 900), (1, 6000)])
def test_prediction_is_what_the_processor_does(size):
    # The full image processor on a grey image: its views, its canvas (the tiles), where the content sits.
    geo, _ = default_settings(PARENT + '_geo').predict(width=size[0], height=size[1])
    out = _processor()([Image.new('RGB', size, (180, 180, 180))], return_tensors='pt')
    pixels = out['pixel_values']
    assert pixels.shape[0] == geo.num_tiles
    assert out['aspect_ratios'][0].tolist() == [geo.tile_rows, geo.tile_cols]
    assert _content(pixels, geo.tile_rows, geo.tile_cols) == [0, 0, geo.resized_width, geo.resized_height], size
    assert geo.thumbnail == (geo.num_tiles > 1) and geo.num_tokens == geo.num_tiles * 144


def test_block_tokens_equal_the_processor_expansion(tmp_path):
    from swift_ext.testing.tiny.llama4 import processor, tokenizer
    proc = processor(PARENT, tokenizer())
    ids = [proc.tokenizer.convert_tokens_to_ids(t) for t in ('<|image_start|>', '<|image_end|>', '<|patch|>',
                                                               '<|tile_x_separator|>', '<|tile_y_separator|>')]
    settings = default_settings(PARENT + '_geo')
    sizes = [(50, 60), (640, 480), (2000, 300), (300, 1700)]
    images = [Image.new('RGB', s, (90, 90, 90)) for s in sizes]
    out = proc(text='<|image|>' * len(sizes), images=images, return_tensors='pt')
    blocks = image_blocks(out['input_ids'][0], *ids)
    expected = [settings.predict(width=w, height=h)[0] for w, h in sizes]
    assert blocks == [(g.tile_rows, g.tile_cols, g.num_tokens) for g in expected]


@pytest.mark.parametrize('size,clamp', [
    ((50, 60), Clamp.UPSCALE),  # grown until its height is one tile (280 x 336)
    ((640, 480), None),  # fits a 2 x 2 canvas as it is: only padded
    ((2000, 300), None),
    ((8000, 6000), Clamp.CANVAS_FIT),  # shrunk into the 16-tile canvas
    ((9000, 40), Clamp.CANVAS_FIT),
])
def test_clamp_names_what_the_processor_did(size, clamp):
    geo, clamped = default_settings(PARENT + '_geo').predict(width=size[0], height=size[1])
    assert clamped == clamp
    resized = (geo.resized_width, geo.resized_height)
    assert (clamped == Clamp.UPSCALE) == (resized[0] >= size[0] and resized[1] >= size[1] and resized != size)


def test_swift_max_pixels_prescale_comes_first():
    geo, plain, (w, h) = contract.assert_prescaled_first(PARENT + '_geo')
    assert (geo.resized_width, geo.num_tiles) == (plain.resized_width, plain.num_tiles)


def test_every_template_on_the_class_is_covered():
    from swift.template.templates.llama import Llama4Template
    parents = contract.parents_on_class(Llama4Template)
    assert parents == {PARENT}
    assert family_of(PARENT)[0].name == 'llama4'


# --------------------------------------------------------------------------- real encodes
@pytest.fixture(scope='module')
def processor(tiny_processor):
    return tiny_processor(PARENT)


def test_settings_from_the_checkpoint_equal_the_published_ones(processor):
    contract.assert_published_settings(processor, PARENT + '_geo')


def test_encode_identical_and_recorded(processor, tmp_path):
    parent, geo_tpl = contract.template(processor, PARENT), contract.template(processor, PARENT + '_geo')
    settings = geo_tpl.geo_settings()
    patch = processor.tokenizer.convert_tokens_to_ids('<|patch|>')
    for group in ([(640, 480)], [(50, 60)], [(2000, 300), (300, 1700)], [(1500, 1500)]):
        paths = [contract.save_image(tmp_path, w, h) for w, h in group]
        expected, encoded = parent.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
        contract.assert_same_encode(expected, encoded)
        geos = [STORE.get(image_key(p), (None, None), PARENT + '_geo') for p in paths]
        for geo, size in zip(geos, group, strict=True):
            assert geo == settings.predict(width=size[0], height=size[1])[0]
            assert (geo.original_width, geo.original_height) == size
        # Independent of the family: every <|patch|> token and every view the encode holds.
        assert encoded['input_ids'].count(patch) == sum(g.num_tokens for g in geos)
        assert encoded['pixel_values'].shape[0] == sum(g.num_tiles for g in geos)


def test_actual_reads_the_encode_when_the_processor_changed(processor, tmp_path):
    # Settings are read once; a processor changed afterwards tiles differently: the record follows the encode.
    from swift_ext.warn import reset_warnings
    tpl = contract.template(processor, PARENT + '_geo')
    path = contract.save_image(tmp_path, 2000, 300)
    ip = tpl.processor.image_processor
    reset_warnings()
    try:
        ip.max_patches = 4
        encoded = tpl.encode(_sample([path]))
        real = ip([Image.open(path).convert('RGB')], return_tensors='pt')
    finally:
        ip.max_patches = 16
    geo = STORE.get(image_key(path), (None, None), PARENT + '_geo')
    assert (geo.tile_rows, geo.tile_cols, geo.num_tiles, geo.num_tokens) == (1, 4, 5, 5 * 144)
    assert encoded['pixel_values'].shape[0] == real['pixel_values'].shape[0] == 5
    assert _content(real['pixel_values'], 1, 4) == [0, 0, geo.resized_width, geo.resized_height] == [0, 0, 1344, 201]


def test_swift_max_pixels_in_the_encode(processor, tmp_path):
    from swift.template.vision_utils import load_image, rescale_image
    tpl = contract.template(processor, PARENT + '_geo', max_pixels=250_000)
    path = contract.save_image(tmp_path, 1600, 1200)
    encoded = tpl.encode(_sample([path]))
    geo = STORE.get(image_key(path), (None, None), PARENT + '_geo')
    shrunk = rescale_image(load_image(path), 250_000)
    real = tpl.processor.image_processor([shrunk], return_tensors='pt')
    assert geo == tpl.geo_settings().predict(width=1600, height=1200)[0]
    assert torch.equal(encoded['pixel_values'], real['pixel_values'])
    assert _content(real['pixel_values'], geo.tile_rows, geo.tile_cols) == [0, 0, geo.resized_width,
                                                                              geo.resized_height]


def test_tiny_tokenizer_has_the_real_ids(tiny_model):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model(PARENT))
    # meta-llama/Llama-4-Scout-17B-16E-Instruct's ids, written out here rather than read from the recipe.
    for token, token_id in {'<|begin_of_text|>': 200000, '<|header_start|>': 200005, '<|header_end|>': 200006,
                            '<|eot|>': 200008, '<|finetune_right_pad|>': 200018, '<|image_start|>': 200080,
                            '<|image_end|>': 200081, '<|tile_x_separator|>': 200084,
                            '<|tile_y_separator|>': 200085, '<|image|>': 200090, '<|patch|>': 200092}.items():
        assert tok.encode(token, add_special_tokens=False) == [token_id], token
    assert tok.encode('\n', add_special_tokens=False) == [198]  # Llama4Template splits on it
