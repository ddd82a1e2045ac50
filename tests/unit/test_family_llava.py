"""LLaVA-1.5 (``llava1_5_hf``) geometry: parity with transformers' resize and centre crop, and ms-swift's encode.

Thousands of sizes go through transformers' own ``get_resize_output_image_size`` and
``TorchvisionBackend.center_crop`` (on one-row index tensors, whose first value says where the crop
started); tens go through the real parent template's ``encode``, whose view is searched for a drawn
rectangle to see where the content really is.
"""
import functools
import random

import pytest
import torch
from PIL import Image

import swift_ext.plugin  # noqa: F401  (registers the templates)
from swift_ext.families.llava import LlavaSettings, crop_offset, resized_frame
from swift_ext.geometry import Clamp
from swift_ext.images import image_key
from swift_ext.rewards import GeoFormat, GeoIoU
from swift_ext.settings import default_settings
from swift_ext.store import STORE
from swift_ext.testing import contract

_sample = functools.partial(contract.sample, answer='[0.1, 0.2, 0.3, 0.4]')

PARENT = 'llava1_5_hf'
TEMPLATE = PARENT + '_geo'


@pytest.fixture(scope='module')
def proc(tiny_processor):
    return tiny_processor(PARENT)


def _sizes(n, seed):
    rng = random.Random(seed)
    out = {(w, h) for w in range(1, 15) for h in range(1, 15)}
    out |= {s for short in (1, 2, 3, 335, 336, 337) for long in (336, 500, 1000, 10000) for s in ((short, long),
                                                                                               (long, short))}
    return contract.filled(out, n, rng, 9000)


# --------------------------------------------------------------- parity over many sizes
def test_resize_parity_with_transformers_over_thousands_of_sizes():
    import numpy as np
    from transformers.image_transforms import get_resize_output_image_size
    from transformers.image_utils import ChannelDimension
    settings = LlavaSettings(template=TEMPLATE, family='llava', coords='norm1')
    sizes = _sizes(4000, seed=15)
    mismatches = []
    for w, h in sizes:
        blank = np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (3, h, w))  # only its shape is read
        th, tw = get_resize_output_image_size(blank, size=336, default_to_square=False,
                                              input_data_format=ChannelDimension.FIRST)
        if resized_frame(width=w, height=h, settings=settings) != (tw, th):
            mismatches.append(((w, h), resized_frame(width=w, height=h, settings=settings), (tw, th)))
    assert mismatches == [], f'{len(mismatches)} of {len(sizes)}: {mismatches[:3]}'


def test_crop_offset_parity_with_torchvision_backend():
    # One-row tensors holding 1..side: the first value of the crop says where it began (0: zero padding).
    from transformers.image_processing_backends import TorchvisionBackend
    from transformers.image_utils import SizeDict
    backend = TorchvisionBackend()
    checked = 0
    for side in range(1, 1200, 7):
        for crop in (1, 2, 224, 335, 336, 337, 448, 1000):
            row = torch.arange(1, side + 1, dtype=torch.float32).view(1, 1, side)
            out = backend.center_crop(row, SizeDict(height=1, width=crop))[0, 0]
            first = int(torch.nonzero(out)[0])  # the zero padding before the content
            expected = first if first else -(int(out[0]) - 1)
            assert crop_offset(side, crop) == expected, (side, crop)
            checked += 1
    assert checked > 1300


@pytest.mark.parametrize('size,clamp,cropped', [
    ((30, 30), Clamp.UPSCALE, False),  # grown 11.2x to the 336 view
    ((336, 336), None, False),
    ((640, 480), Clamp.CANVAS_FIT, True),  # 448x336, the middle 336 columns seen
    ((300, 500), Clamp.UPSCALE, True),  # 336x560 (grown), its middle 336 rows seen
    ((4000, 3000), Clamp.CANVAS_FIT, True),
])
def test_clamp_and_crop_named(size, clamp, cropped):
    geo, clamped = default_settings(TEMPLATE).predict(width=size[0], height=size[1])
    assert clamped == clamp and dict(geo.extra)['cropped'] is cropped
    assert (geo.canvas_width, geo.canvas_height, geo.num_tokens) == (336, 336, 576)
    if size == (640, 480):
        assert (geo.resized_width, geo.resized_height, geo.pad_left, geo.pad_top) == (448, 336, -56, 0)
        assert geo.from_model_frame([0, 0, 1, 1], 'norm1') == pytest.approx([80, 0, 560, 480])


def test_swift_max_pixels_prescale_comes_first():
    geo, clamped = default_settings(TEMPLATE, swift_max_pixels=50176).predict(width=1280, height=960)
    assert (geo.original_width, clamped) == (1280, Clamp.MAX_PIXELS)  # ms-swift's pre-rescale names it
    assert (geo.resized_width, geo.resized_height) == (449, 336)  # of rescale_image's 258x193, not of 1280x960


# ----------------------------------------------------------------------- real encodes
def _view_extent(view, mean, std):
    rgb = (view * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)) * 255
    ys, xs = torch.nonzero((rgb[0] > 200) & (rgb[1] < 100), as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


SIZES = [(50, 60), (640, 480), (1000, 300), (336, 336), (300, 1100), (2000, 90)]


def test_settings_for_without_template_are_the_public_checkpoint(proc):
    contract.assert_published_settings(proc, TEMPLATE)


def test_encode_identical_and_geometry_is_what_the_processor_did(proc, tmp_path):
    base, geo_tpl = contract.template(proc, PARENT), contract.template(proc, TEMPLATE)
    for width, height in SIZES:
        path = contract.drawn_image(tmp_path, width, height)
        a, b = base.encode(_sample([path])), geo_tpl.encode(_sample([path]))
        contract.assert_same_encode(a, b)
        geo = STORE.get(image_key(path), (None, None), TEMPLATE)
        assert geo == geo_tpl.geo_settings().predict(width=width, height=height)[0]
        out = proc(images=[Image.open(path).convert('RGB')], text='<image>', return_tensors='pt')
        assert geo.num_tokens == int((out['input_ids'] == 32000).sum()) == a['input_ids'].count(32000) == 576
        assert (geo.canvas_height, geo.canvas_width) == tuple(a['pixel_values'].shape[-2:])


@pytest.mark.parametrize('do_pad', [False, True])
@pytest.mark.parametrize('size,rect', [
    ((640, 480), (250, 150, 399, 329)),  # the crop cuts 96 columns either side (do_pad: bands above / below)
    ((300, 500), (40, 200, 200, 300)),
    ((1000, 300), (450, 20, 560, 280)),
])
def test_red_box_in_the_real_view_maps_back_to_the_drawn_box(proc, tmp_path, size, rect, do_pad):
    # Where the drawn rectangle really is in the view the model gets, written as the model would (0-1 of
    # the view), mapped back through the recorded geometry; do_pad swaps in LlavaImageProcessor's padding.
    import transformers as tf
    original = proc.image_processor
    if do_pad:
        proc.image_processor = tf.LlavaImageProcessor(
            do_pad=True, size=dict(original.size), crop_size=dict(original.crop_size),
            image_mean=original.image_mean, image_std=original.image_std)
    try:
        tpl = contract.template(proc, TEMPLATE)
        assert tpl.geo_settings().do_pad is do_pad
        path = contract.drawn_image(tmp_path, *size, rect=rect)
        encoded = tpl.encode(_sample([path]))
        parent = contract.template(proc, PARENT).encode(_sample([path]))
        assert torch.equal(encoded['pixel_values'], parent['pixel_values'])
    finally:
        proc.image_processor = original
    geo = STORE.get(image_key(path), (None, None), TEMPLATE)
    x1, y1, x2, y2 = _view_extent(encoded['pixel_values'][0], original.image_mean, original.image_std)
    norm = [x1 / 336, y1 / 336, x2 / 336, y2 / 336]
    drawn = [rect[0], rect[1], rect[2] + 1, rect[3] + 1]  # PIL's rectangle includes its far edge
    seen = geo.from_model_frame([0, 0, 1, 1], 'norm1')  # the part of the file the view shows
    visible = [max(drawn[0], seen[0]), max(drawn[1], seen[1]), min(drawn[2], seen[2]), min(drawn[3], seen[3])]
    scale = max(size) / 336 if do_pad else min(size) / 336  # file pixels per view pixel
    assert geo.from_model_frame(norm, 'norm1') == pytest.approx(visible, abs=2.5 * scale)
    if size == (640, 480) and not do_pad:  # the crop kept columns 80..560 of the 640
        assert visible == [250, 150, 400, 330] and seen == pytest.approx([80, 0, 560, 480])

    class Args:
        template = TEMPLATE
    completion = '[{:.4f}, {:.4f}, {:.4f}, {:.4f}]'.format(*norm)
    images = [[{'bytes': None, 'path': path}]] * 2
    iou = GeoIoU(args=Args())([completion, '[0.0, 0.0, 0.05, 0.05]'], images=images, solution=[visible] * 2)
    assert iou[0] > 0.9 and iou[1] == 0.0
    assert GeoFormat(args=Args())([completion, 'no box'], images=images) == [1.0, 0.0]


def test_tiny_checkpoint_is_small_with_the_real_ids(tiny_model):
    import os

    import transformers
    path = tiny_model(PARENT)
    assert sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) < 30e6
    config = transformers.AutoConfig.from_pretrained(path)
    assert config.image_token_index == 32000
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    for token, token_id in {'<unk>': 0, '<s>': 1, '</s>': 2, '<image>': 32000}.items():
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id], token
    model = transformers.LlavaForConditionalGeneration.from_pretrained(path)
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
