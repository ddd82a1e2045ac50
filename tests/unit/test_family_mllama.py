"""Llama 3.2 Vision (Mllama) geometry: parity with transformers' tiling functions over thousands of sizes,
with the real image processor's tiles on tens, and a real encode through ``llama3_2_vision_geo`` that is
byte-identical to ms-swift's parent and records what the processor and the cross-attention mask show."""

import functools

import numpy as np
import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families import family_of
from swift_ext.families.mllama import fit_to_canvas, optimal_canvas, supported_aspect_ratios
from swift_ext.geometry import Clamp
from swift_ext.images import image_key
from swift_ext.settings import default_settings
from swift_ext.store import STORE
from swift_ext.testing import contract

_sample = functools.partial(contract.sample, prompt='Where is the box?')
_sizes = functools.partial(contract.tile_sizes, ratios=(0.5, 1, 2))

PARENT = 'llama3_2_vision'
# (tile size, max_image_tiles): the real checkpoints', then off-default processors.
SETTINGS = [(560, 4), (560, 1), (560, 2), (448, 6), (224, 9)]


@pytest.mark.parametrize('tile,max_tiles', SETTINGS)
def test_tiling_parity_with_transformers(tile, max_tiles):
    # transformers' own functions, on 2,000+ sizes per setting: the canvas, then the content fitted into it.
    from transformers.models.mllama.image_processing_mllama import (
        get_all_supported_aspect_ratios,
        get_image_size_fit_to_canvas,
        get_optimal_tiled_canvas,
    )
    assert list(supported_aspect_ratios(max_tiles)) == get_all_supported_aspect_ratios(max_tiles)
    mismatches = []
    for w, h in _sizes(2000, seed=tile * max_tiles, tile=tile):
        canvas_h, canvas_w = (int(v) for v in get_optimal_tiled_canvas(h, w, max_tiles, tile))
        new_h, new_w = (int(v) for v in get_image_size_fit_to_canvas(h, w, canvas_h, canvas_w, tile))
        rows, cols = optimal_canvas(width=w, height=h, max_image_tiles=max_tiles, tile_size=tile)
        got = (rows * tile, cols * tile,
               fit_to_canvas(width=w, height=h, canvas_width=cols * tile, canvas_height=rows * tile, tile_size=tile))
        if got != (canvas_h, canvas_w, (new_w, new_h)):
            mismatches.append(((w, h), got, (canvas_h, canvas_w, (new_w, new_h))))
    assert mismatches == [], mismatches[:5]


def _processor(max_tiles=4, tile=560):
    from transformers import MllamaImageProcessor
    return MllamaImageProcessor(size={'height': tile, 'width': tile}, max_image_tiles=max_tiles)


def _canvas_content(out, rows, cols, mean, std):
    """The tiles laid back into the canvas; ``[x1, y1, x2, y2]`` of the pixels that are not padding."""
    tiles = out['pixel_values'][0, 0]
    tile = tiles.shape[-1]
    canvas = torch.zeros(3, rows * tile, cols * tile)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        canvas[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = tiles[i]
    pad = (-torch.tensor(mean) / torch.tensor(std)).view(3, 1, 1)  # a zero pixel, normalised
    ys, xs = torch.nonzero((canvas - pad).abs().amax(0) > 1e-4, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


@pytest.mark.parametrize('size', [(50, 60), (640, 480), (560, 560), (561, 560), (1000, 300), (2000, 300),
                                  (300, 1700), (1200, 1200), (3000, 2000), (5, 900), (1500, 400)])
def test_prediction_is_what_the_image_processor_does(size):
    # The full processor on a grey image: its aspect ratio id, its tile count, and where the content sits.
    ip = _processor()
    settings = default_settings(PARENT + '_geo')
    geo, _ = settings.predict(width=size[0], height=size[1])
    out = ip([Image.new('RGB', size, (180, 180, 180))], return_tensors='pt')
    ratio_id = dict(geo.extra)['aspect_ratio_id']
    assert int(out['aspect_ratio_ids'][0, 0]) == ratio_id
    assert out['num_tiles'] == [[geo.num_tiles]] and int(out['aspect_ratio_mask'][0, 0].sum()) == geo.num_tiles
    assert supported_aspect_ratios(4)[ratio_id - 1] == (geo.tile_rows, geo.tile_cols)
    content = _canvas_content(out, geo.tile_rows, geo.tile_cols, ip.image_mean, ip.image_std)
    assert content == [0, 0, geo.resized_width, geo.resized_height], size
    assert (geo.canvas_width, geo.canvas_height) == (560 * geo.tile_cols, 560 * geo.tile_rows)


@pytest.mark.parametrize('size,clamp', [
    ((50, 60), Clamp.UPSCALE),  # grown until its height is one tile (466 x 560)
    ((640, 480), None),  # fits a 2-tile canvas as it is: only padded
    ((2000, 300), None),
    ((4000, 3000), Clamp.CANVAS_FIT),  # shrunk into the 2 x 2 canvas
    ((3000, 50), Clamp.CANVAS_FIT),  # shrunk to the 4-tile row's width
])
def test_clamp_names_what_the_processor_did(size, clamp):
    geo, clamped = default_settings(PARENT + '_geo').predict(width=size[0], height=size[1])
    assert clamped == clamp
    resized = (geo.resized_width, geo.resized_height)
    grew = resized[0] >= size[0] and resized[1] >= size[1] and resized != size
    assert (clamped == Clamp.UPSCALE) == grew


def test_no_image_is_refused_and_tokens_count_tiles():
    settings = default_settings(PARENT + '_geo')
    for w, h in [(1, 1), (1, 20000), (20000, 1), (9000, 9000)]:
        geo, _ = settings.predict(width=w, height=h)
        assert min(geo.resized_width, geo.resized_height) >= 1
        assert geo.num_tokens == geo.num_tiles * (1600 + 1)  # 40 x 40 patches + the class token, per tile


def test_swift_max_pixels_prescale_comes_first():
    geo, plain, (w, h) = contract.assert_prescaled_first(PARENT + '_geo')
    assert (geo.resized_width, geo.num_tiles) == (plain.resized_width, plain.num_tiles)
    assert dict(geo.extra)['processor_input_width'] == w


def test_every_template_on_the_class_is_covered():
    from swift.template import TEMPLATE_MAPPING
    from swift.template.templates.llama import Llama3_2VisionTemplate
    parents = contract.parents_on_class(Llama3_2VisionTemplate)
    assert parents == {PARENT}
    assert family_of(PARENT)[0].name == 'mllama'
    assert TEMPLATE_MAPPING[PARENT + '_geo'].template_cls.__mro__[2] is Llama3_2VisionTemplate


# --------------------------------------------------------------------------- real encodes
@pytest.fixture(scope='module')
def processor(tiny_processor):
    return tiny_processor(PARENT)


def test_settings_from_the_checkpoint_equal_the_published_ones(processor):
    contract.assert_published_settings(processor, PARENT + '_geo')


def test_encode_identical_and_recorded(processor, tmp_path, tiny_model):
    from transformers import AutoConfig, MllamaVisionModel
    parent, geo_tpl = contract.template(processor, PARENT), contract.template(processor, PARENT + '_geo')
    # What one tile gives the text to attend to, from the tiny model's own vision tower.
    per_tile = MllamaVisionModel(AutoConfig.from_pretrained(tiny_model(PARENT)).vision_config).num_patches
    settings = geo_tpl.geo_settings()
    assert per_tile == settings.tokens_per_tile == 1601
    for group in ([(640, 480)], [(50, 60)], [(2000, 300), (300, 1700)], [(1200, 1200)]):
        paths = [contract.save_image(tmp_path, w, h) for w, h in group]
        expected, encoded = parent.encode(_sample(paths)), geo_tpl.encode(_sample(paths))
        contract.assert_same_encode(expected, encoded)
        ids = encoded['input_ids']
        starts = [i for i, t in enumerate(ids) if t == processor.image_token_id]
        assert len(starts) == len(group)  # one <|image|> token per image, whatever its size
        for i, (size, path) in enumerate(zip(group, paths, strict=True)):
            geo = STORE.get(image_key(path), (None, None), PARENT + '_geo')
            assert geo == settings.predict(width=size[0], height=size[1])[0]
            assert (geo.original_width, geo.original_height) == size
            assert int(encoded['aspect_ratio_ids'][0, i]) == dict(geo.extra)['aspect_ratio_id']
            assert int(encoded['aspect_ratio_mask'][0, i].sum()) == geo.num_tiles
            # The tiles the text after this image may attend to, times the positions each tile gives.
            visible = int(encoded['cross_attention_mask'][0, starts[-1] + 1, i].sum())
            assert visible * per_tile == geo.num_tokens
        assert tuple(encoded['pixel_values'].shape) == (1, len(group), 4, 3, 560, 560)


def test_actual_reads_the_encode_when_the_processor_changed(processor, tmp_path):
    # Settings are read once; a processor changed afterwards tiles differently: the record follows the encode.
    from swift_ext.warn import reset_warnings
    tpl = contract.template(processor, PARENT + '_geo')
    path = str(tmp_path / 'wide_2000x300.png')
    Image.new('RGB', (2000, 300), (120, 130, 140)).save(path)
    predicted = tpl.geo_settings().predict(width=2000, height=300)[0]
    ip = tpl.processor.image_processor
    reset_warnings()
    try:
        ip.max_image_tiles = 2
        encoded = tpl.encode(_sample([path]))
    finally:
        ip.max_image_tiles = 4
    geo = STORE.get(image_key(path), (None, None), PARENT + '_geo')
    two = _processor(max_tiles=2)
    real = two([Image.open(path).convert('RGB')], return_tensors='pt')
    assert (predicted.tile_rows, predicted.tile_cols) == (1, 4)
    assert (geo.tile_rows, geo.tile_cols, geo.num_tiles, geo.num_tokens) == (1, 2, 2, 2 * 1601)
    ratio_id = dict(geo.extra)['aspect_ratio_id']
    assert ratio_id == int(encoded['aspect_ratio_ids'][0, 0]) == int(real['aspect_ratio_ids'][0, 0])
    content = _canvas_content(real, 1, 2, two.image_mean, two.image_std)
    assert content == [0, 0, geo.resized_width, geo.resized_height] == [0, 0, 1120, 168]


def test_swift_max_pixels_in_the_encode(processor, tmp_path):
    from swift.template.vision_utils import load_image, rescale_image
    tpl = contract.template(processor, PARENT + '_geo', max_pixels=250_000)
    path = str(tmp_path / 'big_1600x1200.png')
    Image.new('RGB', (1600, 1200), (10, 200, 30)).save(path)
    encoded = tpl.encode(_sample([path]))
    geo = STORE.get(image_key(path), (None, None), PARENT + '_geo')
    shrunk = rescale_image(load_image(path), 250_000)
    real = tpl.processor.image_processor([shrunk], return_tensors='pt')  # the checkpoint's own processor
    assert geo == tpl.geo_settings().predict(width=1600, height=1200)[0]
    ratio_id = dict(geo.extra)['aspect_ratio_id']
    assert int(encoded['aspect_ratio_ids'][0, 0]) == int(real['aspect_ratio_ids'][0, 0]) == ratio_id
    assert (dict(geo.extra)['processor_input_width'], dict(geo.extra)['processor_input_height']) == shrunk.size
    assert np.array_equal(encoded['pixel_values'].numpy(), real['pixel_values'].numpy())


def test_tiny_tokenizer_has_the_real_ids(tiny_model):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_model(PARENT))
    # meta-llama/Llama-3.2-11B-Vision-Instruct's ids, written out here rather than read from the recipe.
    for token, token_id in {'<|begin_of_text|>': 128000, '<|finetune_right_pad_id|>': 128004,
                            '<|start_header_id|>': 128006, '<|end_header_id|>': 128007, '<|eot_id|>': 128009,
                            '<|python_tag|>': 128010, '<|image|>': 128256}.items():
        assert tok.encode(token, add_special_tokens=False) == [token_id], token
