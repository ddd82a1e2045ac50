"""Kimi-K2.5 (``kimi_k25``, published processor code): the NaViT resize pinned to transformers' port of the
checkpoint's processor (``navit_resize``, ``Kimi_K25ImageProcessor``) over thousands of sizes and real
images; ms-swift's template needs the checkpoint's remote processor API, which these tests show."""
import random

import pytest
from PIL import Image

from swift_ext.families import family_of
from swift_ext.families.kimi_k25 import navit_resize
from swift_ext.geometry import Clamp
from swift_ext.settings import default_settings
from swift_ext.testing import contract

TEMPLATE = 'kimi_k25_geo'
LIMITS = [(16384, 512), (4096, 512), (16384, 64), (1024, 32)]  # (in_patch_limit, patches a side)


def _sizes(n, seed):
    rng = random.Random(seed)
    out = {(w, h) for w in range(1, 60, 4) for h in range(1, 60, 4)}
    out |= {(short, long) for short in (1, 13, 14, 27, 28, 29) for long in (7167, 7168, 7169, 20000)}
    out |= {(h, w) for w, h in list(out)}
    return contract.filled(out, n, rng, 20000)


@pytest.mark.parametrize('limit,side', LIMITS)
def test_navit_resize_parity_with_transformers_over_thousands_of_sizes(limit, side):
    from transformers.models.kimi_k25.image_processing_kimi_k25 import navit_resize as theirs
    sizes = _sizes(2500 if (limit, side) == LIMITS[0] else 800, seed=limit + side)
    mismatches, clamps = [], set()
    for w, h in sizes:
        (rh, rw), (ph, pw) = theirs(h, w, patch_size=14, merge_kernel_size=2, max_patches=limit,
                                    max_size_per_side=side)
        resized, canvas, clamp = navit_resize(width=w, height=h, in_patch_limit=limit, side_limit=side)
        clamps.add(clamp)
        if (resized, canvas) != ((rw, rh), (pw, ph)):
            mismatches.append(((w, h), (resized, canvas), ((rw, rh), (pw, ph))))
    assert mismatches == [], f'{len(mismatches)} of {len(sizes)}: {mismatches[:3]}'
    if (limit, side) == LIMITS[0]:
        assert clamps == {None, Clamp.MAX_PIXELS, Clamp.LONGEST_EDGE}


def test_token_count_is_the_processors_patch_count_over_the_merge():
    import transformers as tf
    ip = tf.Kimi_K25ImageProcessor()
    settings = default_settings(TEMPLATE)
    for w, h in _sizes(1500, seed=9):
        geo, _ = settings.predict(width=w, height=h)
        assert geo.num_tokens * 4 == ip.get_number_of_image_patches(h, w) == geo.grid[1] * geo.grid[2], (w, h)


@pytest.mark.parametrize('size', [(1, 1), (50, 60), (640, 480), (1000, 40), (3000, 2000), (9000, 300)])
def test_geometry_is_what_the_processor_does_to_a_real_image(size):
    # transformers' port of the checkpoint's processor, on a real image: its grid, and where the content is.
    import torch
    import transformers as tf
    ip = tf.Kimi_K25ImageProcessor()
    out = ip(images=[Image.new('RGB', size, (250, 250, 250))], return_tensors='pt')
    geo, _ = default_settings(TEMPLATE).predict(width=size[0], height=size[1])
    assert out['image_grid_thw'][0].tolist() == list(geo.grid)
    # pixel_values: (patches, 3, 14, 14) row-major; the zero padding normalises to -1 (mean 0.5, std 0.5).
    t, gh, gw = geo.grid
    pixels = out['pixel_values'].reshape(gh, gw, 3, 14, 14).permute(2, 0, 3, 1, 4).reshape(3, gh * 14, gw * 14)
    ys, xs = torch.nonzero(pixels[0] > -0.99, as_tuple=True)
    assert (int(xs.max()) + 1, int(ys.max()) + 1) == (geo.resized_width, geo.resized_height)
    assert (geo.canvas_width, geo.canvas_height) == (gw * 14, gh * 14)


def test_the_template_needs_the_checkpoints_remote_processor():
    # Why the verification is published_code: ms-swift 4.6's KimiK25Template hands the processor media dicts
    # and reads `grid_thws` (the remote KimiK25VisionProcessor's API); transformers' port takes images and
    # returns `image_grid_thw`.
    import inspect

    import transformers as tf
    from swift.template.templates.moonshot import KimiK25Template
    source = inspect.getsource(KimiK25Template._encode)
    assert "'type': 'image'" in source and "image_inputs['grid_thws']" in source
    out = tf.Kimi_K25ImageProcessor()(images=[Image.new('RGB', (64, 64))], return_tensors='pt')
    assert 'grid_thws' not in out and 'image_grid_thw' in out
    _, spec = family_of(TEMPLATE)
    assert spec.verification == 'published_code' and spec.model_type is None and not spec.boxes_trained


@pytest.mark.parametrize('size,clamp', [((640, 480), None), ((4000, 3000), Clamp.MAX_PIXELS),
                                        ((9000, 300), Clamp.LONGEST_EDGE), ((5, 5), None)])
def test_clamp_names(size, clamp):
    geo, clamped = default_settings(TEMPLATE).predict(width=size[0], height=size[1])
    assert clamped == clamp
    assert geo.max_scale <= 1.0  # never an upscale: a small image is padded, not grown
