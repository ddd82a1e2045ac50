"""LLaVA-NeXT / LLaVA-OneVision geometry: parity with transformers' anyres functions and ms-swift's encode.

Thousands of sizes go through transformers' own pure functions (``select_best_resolution``,
``get_patch_output_size``, the processor's ``_get_padding_size``, ``divide_to_patches``,
``_get_number_of_features``); a handful go through the real parent template's ``encode``, whose
``pixel_values`` are laid back into the canvas to see where the content and the padding really are.
"""
import functools
import random

import numpy as np
import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext import store
from swift_ext.families import family_of
from swift_ext.families.llava_next import best_pinpoint, fit_in_canvas
from swift_ext.geometry import Clamp
from swift_ext.images import image_key
from swift_ext.rewards import GeoFormat, GeoIoU
from swift_ext.settings import default_settings
from swift_ext.store import STORE
from swift_ext.testing import contract

_sample = functools.partial(contract.sample, answer='[0.1, 0.2, 0.3, 0.4]')

NEXT, OV = 'llava1_6_mistral_hf', 'llava_onevision_hf'
ALL_NEXT = ('llava1_6_mistral_hf', 'llava1_6_vicuna_hf', 'llava1_6_yi_hf', 'llama3_llava_next_hf',
            'llava_next_qwen_hf')
OTHER_PINPOINTS = [[336, 336], [336, 1344], [1344, 336], [672, 1008], [1008, 672], [1008, 1008]]


# ----------------------------------------------------------------------------- fixtures
# --------------------------------------------------------------- parity over many sizes
def _sizes(pinpoints, n, seed):
    """Tiny, extreme, pinpoint-boundary, exact-ratio and random (log-uniform) sizes, as (width, height)."""
    rng = random.Random(seed)
    out = {(w, h) for w in range(1, 13) for h in range(1, 13)}
    out |= {s for short in (1, 2, 3, 7) for long in (500, 1000, 3001, 10000) for s in ((short, long), (long, short))}
    for ph, pw in pinpoints:
        for k in (1 / 3, 0.5, 1, 2, 3):
            out |= {(round(pw * k) + dw, round(ph * k) + dh) for dw in (-1, 0, 1) for dh in (-1, 0, 1)}
    for base in range(1, 700, 13):
        out |= {(base * a, base * b) for a, b in ((1, 1), (2, 1), (1, 2), (3, 1), (1, 3), (4, 3), (16, 9), (9, 16))}
    return contract.filled(out, n, rng, 8000)


def _blank(height, width):
    # A zero-stride array: transformers' size functions read only `.shape`.
    return np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (3, height, width))


def _reference(processor, width, height, drop):
    """What transformers (and ms-swift's token rule) give for a ``width`` x ``height`` processor input."""
    from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
    from transformers.image_transforms import divide_to_patches
    from transformers.image_utils import ChannelDimension
    ip = processor.image_processor
    canvas_h, canvas_w = select_best_resolution((height, width), ip.image_grid_pinpoints)
    new_h, new_w = get_patch_output_size(_blank(height, width), (canvas_h, canvas_w), ChannelDimension.FIRST)
    left, top, _, _ = ip._get_padding_size((new_h, new_w), (canvas_h, canvas_w))
    tile = ip.crop_size['height'] if ip.crop_size is not None else ip.size['height']
    tiles = len(divide_to_patches(_blank(canvas_h, canvas_w), tile))
    tokens = processor._get_number_of_features(height, width, tile, tile) - drop
    return {'canvas_width': canvas_w, 'canvas_height': canvas_h, 'resized_width': new_w, 'resized_height': new_h,
            'pad_left': left, 'pad_top': top, 'num_tiles': tiles + 1, 'num_tokens': tokens}


def _parity(processor, settings, sizes, drop):
    mismatches = []
    for w, h in sizes:
        geo, _ = settings.predict(width=w, height=h)
        got = {k: getattr(geo, k) for k in ('canvas_width', 'canvas_height', 'resized_width', 'resized_height',
                                             'pad_left', 'pad_top', 'num_tiles', 'num_tokens')}
        want = _reference(processor, w, h, drop)
        if got != want:
            mismatches.append(((w, h), got, want))
    return mismatches


@pytest.mark.parametrize('parent,drop', [(NEXT, 1), (OV, 0)])
def test_parity_with_transformers_over_thousands_of_sizes(tiny_processor, parent, drop):
    # drop: ms-swift's LlavaHfTemplate subtracts 1 under the 'default' strategy (NeXT); OneVision never does.
    proc = tiny_processor(parent)
    settings = contract.template(proc, parent + '_geo').geo_settings()
    sizes = _sizes(proc.image_processor.image_grid_pinpoints, 3000, seed=10)
    assert len(sizes) >= 3000
    mismatches = _parity(proc, settings, sizes, drop)
    assert mismatches == [], f'{len(mismatches)} of {len(sizes)} sizes differ, first: {mismatches[:3]}'


def test_parity_with_other_pinpoints_and_anyres_max(tiny_processor):
    # Settings come from the live processor: other pinpoints (NeXT) and anyres_max_4 (OneVision) too.
    nxt, ov = tiny_processor(NEXT), tiny_processor(OV)
    old = (nxt.image_processor.image_grid_pinpoints, ov.vision_aspect_ratio)
    try:
        nxt.image_processor.image_grid_pinpoints = OTHER_PINPOINTS
        ov.vision_aspect_ratio = 'anyres_max_4'
        for parent, proc, drop in ((NEXT, nxt, 1), (OV, ov, 0)):
            settings = contract.template(proc, parent + '_geo').geo_settings()
            sizes = _sizes(proc.image_processor.image_grid_pinpoints, 1500, seed=11)
            assert _parity(proc, settings, sizes, drop) == []
        assert contract.template(nxt, NEXT + '_geo').geo_settings().image_grid_pinpoints[0] == (336, 336)
    finally:
        nxt.image_processor.image_grid_pinpoints, ov.vision_aspect_ratio = old


@pytest.mark.parametrize('parent,size,clamp', [
    (NEXT, (30, 30), Clamp.UPSCALE),  # an icon grown 11.2x to touch its 336x672 canvas
    (NEXT, (672, 336), None),  # exactly a pinpoint
    (NEXT, (1000, 300), Clamp.UPSCALE),  # 1008x303 in a 1008x336 canvas: grown a little
    (NEXT, (4000, 3000), Clamp.CANVAS_FIT),  # shrunk into 672x672: no --max_pixels involved
    (OV, (30, 30), Clamp.UPSCALE),
    (OV, (2304, 2304), None),
    (OV, (4000, 3000), Clamp.CANVAS_FIT),
])
def test_clamp_names_what_the_processor_did(tiny_processor, parent, size, clamp):
    # The content size transformers' select_best_resolution + get_patch_output_size give decides the name.
    proc = tiny_processor(parent)
    ref = _reference(proc, *size, 0)
    real = (ref['resized_width'], ref['resized_height'])
    geo, clamped = contract.template(proc, parent + '_geo').geo_settings().predict(width=size[0], height=size[1])
    assert (geo.resized_width, geo.resized_height) == real and clamped == clamp
    grew = real[0] >= size[0] and real[1] >= size[1] and real != size
    assert (clamped == Clamp.UPSCALE) == grew
    assert (clamped == Clamp.CANVAS_FIT) == (real[0] < size[0] or real[1] < size[1])
    if size == (30, 30) and parent == NEXT:
        assert geo.max_scale == pytest.approx(11.2)


def test_settings_for_without_template_are_the_public_checkpoints(tiny_processor):
    # The tiny checkpoints carry the public tiny_processor' settings; `settings_for` must equal what a
    # live template reads from them (the 'versions' field aside).
    for parent in (NEXT, OV):
        contract.assert_published_settings(tiny_processor(parent), parent + '_geo')
    for parent in ALL_NEXT:
        assert family_of(parent)[0].name == 'llava_next'
    assert default_settings('llava1_6_yi_hf_geo').coords == 'norm1'


def test_every_parent_is_an_ms_swift_template_of_the_right_class():
    from swift.template import TEMPLATE_MAPPING
    from swift.template.templates.llava import Llava1_6HfTemplate, LlavaOneVisionHfTemplate
    served = {name for name, cls in ((n, m.template_cls) for n, m in TEMPLATE_MAPPING.items())
              if not name.endswith('_geo') and (cls in (Llava1_6HfTemplate, LlavaOneVisionHfTemplate)
                                                or Llava1_6HfTemplate in cls.__bases__)}
    assert served == set(ALL_NEXT) | {OV}
    for parent in served:
        assert TEMPLATE_MAPPING[parent + '_geo'].template_cls.__mro__[2] is TEMPLATE_MAPPING[parent].template_cls


def test_swift_max_pixels_prescale_comes_first():
    from swift_ext.geometry import swift_rescaled_size
    settings = default_settings(NEXT + '_geo', swift_max_pixels=50176)
    geo, clamped = settings.predict(width=1280, height=960)
    w, h = swift_rescaled_size(width=1280, height=960, max_pixels=50176)
    plain, _ = default_settings(NEXT + '_geo').predict(width=w, height=h)
    assert (geo.original_width, clamped) == (1280, Clamp.MAX_PIXELS)  # ms-swift's pre-rescale names it, not the canvas
    assert (geo.num_tokens, geo.resized_width, geo.pad_top) == (plain.num_tokens, plain.resized_width, plain.pad_top)


# ----------------------------------------------------------------------- real encodes
def _canvas(pixel_values, geo, mean, std):
    """Lay the tiles back into the canvas; return its pixels (3, H, W) and where they differ from padding."""
    tile = pixel_values.shape[-1]
    views = pixel_values[1:1 + geo.tile_cols * geo.tile_rows]
    canvas = torch.zeros(3, geo.tile_rows * tile, geo.tile_cols * tile)
    for i, view in enumerate(views):
        r, c = divmod(i, geo.tile_cols)
        canvas[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = view
    pad = (-torch.tensor(mean) / torch.tensor(std)).view(3, 1, 1)  # a zero pixel, normalised
    return canvas, (canvas - pad).abs().amax(0) > 1e-4


def _extent(mask):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


SIZES = {NEXT: [(50, 60), (640, 480), (1000, 300), (672, 336), (300, 1100)],
         OV: [(50, 60), (640, 480), (1000, 300), (768, 384), (2000, 90)]}


@pytest.mark.parametrize('parent', [NEXT, OV])
def test_encode_identical_and_geometry_is_what_the_processor_did(tiny_processor, tmp_path, parent):
    proc = tiny_processor(parent)
    base, geo_tpl = contract.template(proc, parent), contract.template(proc, parent + '_geo')
    ip = proc.image_processor
    token = 32000 if parent == NEXT else 151646
    for width, height in SIZES[parent]:
        path = contract.drawn_image(tmp_path, width, height)
        sample = _sample([path])
        a, b = base.encode(sample), geo_tpl.encode(sample)
        contract.assert_same_encode(a, b)  # byte-identical to the parent
        geo = STORE.get(image_key(path), (None, None), parent + '_geo')
        predicted, _ = geo_tpl.geo_settings().predict(width=width, height=height)
        assert geo == predicted
        # The processor's own view: its token expansion, its views, its input size.
        out = proc(images=[Image.open(path).convert('RGB')], text='<image>', return_tensors='pt')
        assert geo.num_tokens == int((out['input_ids'] == token).sum()) == a['input_ids'].count(token)
        assert geo.num_tiles == out['pixel_values'].shape[1] == a['pixel_values'].shape[1]
        assert out['image_sizes'][0].tolist() == [height, width]
        # Where the content really is in the canvas the tiles come from.
        _, content = _canvas(a['pixel_values'][0], geo, ip.image_mean, ip.image_std)
        assert content.shape == (geo.canvas_height, geo.canvas_width)
        assert _extent(content) == [geo.pad_left, geo.pad_top, geo.pad_left + geo.resized_width,
                                    geo.pad_top + geo.resized_height], (width, height)
        assert (geo.global_width, geo.global_height) == tuple(a['pixel_values'].shape[-2:])


@pytest.mark.parametrize('parent', [NEXT, OV])
def test_two_images_in_one_row(tiny_processor, tmp_path, parent):
    # pixel_values is padded to the larger image's view count: each image keeps its own geometry.
    proc = tiny_processor(parent)
    tpl = contract.template(proc, parent + '_geo')
    paths = [contract.drawn_image(tmp_path, 40, 30), contract.drawn_image(tmp_path, 1000, 700)]
    encoded = tpl.encode(_sample(paths))
    geos = [STORE.get(image_key(p), (None, None), parent + '_geo') for p in paths]
    for path, geo in zip(paths, geos, strict=True):
        assert geo == tpl.geo_settings().predict(width=Image.open(path).width, height=Image.open(path).height)[0]
    assert encoded['pixel_values'].shape[1] == max(g.num_tiles for g in geos) > min(g.num_tiles for g in geos)
    # The views the model keeps (its own image_size_to_num_patches of image_sizes) are the real ones.
    if parent == NEXT:
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches
    else:
        from transformers.models.llava_onevision.modeling_llava_onevision import image_size_to_num_patches
    ip = proc.image_processor
    for i, geo in enumerate(geos):
        kept = image_size_to_num_patches(encoded['image_sizes'][i], ip.image_grid_pinpoints, geo.global_width)
        views = encoded['pixel_values'][i]
        assert geo.num_tiles == kept and all(bool(v.any()) for v in views[:kept]) and not views[kept:].any()
    token = 32000 if parent == NEXT else 151646
    assert encoded['input_ids'].count(token) == sum(g.num_tokens for g in geos)


def test_swift_max_pixels_in_the_template(tiny_processor, tmp_path):
    proc = tiny_processor(NEXT)
    tpl = contract.template(proc, NEXT + '_geo', max_pixels=50176)
    path = contract.drawn_image(tmp_path, 1280, 960)
    encoded = tpl.encode(_sample([path]))
    geo = STORE.get(image_key(path), (None, None), NEXT + '_geo')
    assert geo == default_settings(NEXT + '_geo', swift_max_pixels=50176).predict(width=1280, height=960)[0]
    assert encoded['image_sizes'][0].tolist() == [193, 258]  # ms-swift's rescale_image: int(sqrt(50176 / (4/3)))


# ----------------------------------------------------------------------------- boxes
def test_pure_helpers_order_width_height():
    # select_best_resolution takes (height, width) pinpoints; ours answer (width, height) like PIL.
    assert best_pinpoint(width=1000, height=300, pinpoints=[[336, 1008], [1008, 336]]) == (1008, 336)
    assert fit_in_canvas(width=640, height=480, canvas_width=672, canvas_height=672) == (672, 504)


def test_from_model_frame_padded_band_and_box_across_tiles():
    geo, _ = default_settings(NEXT + '_geo').predict(width=640, height=480)
    assert (geo.canvas_width, geo.canvas_height, geo.resized_height, geo.pad_top) == (672, 672, 504, 84)
    # Entirely in the top padding band (canvas y < 84): maps above the image (negative y).
    band = geo.from_model_frame([0.25, 0.02, 0.5, 0.1], 'norm1')
    assert band == pytest.approx([160.0, (0.02 * 672 - 84) / 1.05, 320.0, (0.1 * 672 - 84) / 1.05])
    assert band[3] < 0
    # Across the tile seams at 336 px in both axes: one affine map, no per-tile offset.
    cross = geo.from_model_frame([0.4, 0.4, 0.6, 0.6], 'norm1')
    assert cross == pytest.approx([0.4 * 672 / 1.05, (0.4 * 672 - 84) / 1.05, 0.6 * 672 / 1.05,
                                   (0.6 * 672 - 84) / 1.05])
    assert geo.to_model_frame(cross, 'norm1') == pytest.approx([0.4, 0.4, 0.6, 0.6])


@pytest.mark.parametrize('parent,size,rect', [
    (NEXT, (640, 480), (250, 150, 399, 329)),  # crosses the 336 px seams of the 2x2 canvas
    (NEXT, (1000, 300), (300, 40, 420, 260)),  # 1008x336 canvas, padded top and bottom
    (OV, (640, 480), (300, 120, 420, 330)),  # 768x768 canvas, seams at 384
])
def test_red_box_found_in_the_real_canvas_maps_back_to_the_drawn_box(tiny_processor, tmp_path, parent, size, rect,
                                                                   monkeypatch):
    # Find the drawn rectangle in the pixels the model gets, write it as the model would (0-1 of the
    # padded canvas), and let GeoIoU / GeoFormat score that completion against the drawn box.
    # OneVision has no trained box output: geo_iou scores only in the convention the user names.
    if parent == OV:
        monkeypatch.setenv('SWIFT_EXT_COORDS', 'norm1')
    store.reset()
    proc = tiny_processor(parent)
    tpl = contract.template(proc, parent + '_geo')
    path = contract.drawn_image(tmp_path, *size, rect=rect)
    encoded = tpl.encode(_sample([path]))
    geo = STORE.get(image_key(path), (None, None), parent + '_geo')
    canvas, _ = _canvas(encoded['pixel_values'][0], geo, proc.image_processor.image_mean,
                        proc.image_processor.image_std)
    std = torch.tensor(proc.image_processor.image_std).view(3, 1, 1)
    mean = torch.tensor(proc.image_processor.image_mean).view(3, 1, 1)
    rgb = (canvas * std + mean) * 255
    x1, y1, x2, y2 = _extent((rgb[0] > 200) & (rgb[1] < 100))
    norm = [x1 / geo.canvas_width, y1 / geo.canvas_height, x2 / geo.canvas_width, y2 / geo.canvas_height]
    drawn = [rect[0], rect[1], rect[2] + 1, rect[3] + 1]  # PIL's rectangle includes its far edge
    assert geo.from_model_frame(norm, 'norm1') == pytest.approx(drawn, abs=2.5)

    class Args:
        template = parent + '_geo'
    completion = '[{:.4f}, {:.4f}, {:.4f}, {:.4f}]'.format(*norm)
    images = [[{'bytes': None, 'path': path}]] * 3
    iou = GeoIoU(args=Args())([completion, '[0.0, 0.0, 0.05, 0.05]', 'no box'], images=images,
                              solution=[drawn] * 3)
    assert iou[0] > 0.95 and iou[1] == 0.0 and iou[2] == 0.0
    assert GeoFormat(args=Args())([completion, 'no box', '{"bbox_2d": [1, 2, 3, 4]}'], images=images) == [1.0, 0.0,
                                                                                                       0.0]
    if parent == OV:  # without a named convention: no guess, None
        monkeypatch.delenv('SWIFT_EXT_COORDS')
        assert GeoIoU(args=Args())([completion], images=images[:1], solution=[drawn]) == [None]


# --------------------------------------------------------------------- tiny checkpoints
@pytest.mark.parametrize('parent,ids', [
    (NEXT, {'<unk>': 0, '<s>': 1, '</s>': 2, '<image>': 32000}),
    (OV, {'<|endoftext|>': 151643, '<|im_start|>': 151644, '<|im_end|>': 151645, '<image>': 151646,
          '<video>': 151647}),
])
def test_tiny_checkpoint_is_small_with_the_real_ids(tiny_model, parent, ids):
    import os

    import transformers
    path = tiny_model(parent)
    assert sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) < 30e6
    config = transformers.AutoConfig.from_pretrained(path)
    assert config.image_token_index == ids['<image>']  # the id the model looks for in input_ids
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    assert len(tokenizer) <= config.get_text_config().vocab_size
    for token, token_id in ids.items():
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id], token
    model = getattr(transformers, config.architectures[0]).from_pretrained(path)
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) < 6_000_000
