"""dots.ocr: qwen-vl-utils' fetch_image with its defaults (pinned to the installed qwen-vl-utils), no env or row
limits, and the ms-swift 4.6.0 breakage that keeps its encode from running here (pinned: fails once fixed)."""
import inspect
import math
import random

import pytest
from PIL import Image

from swift_ext.families import describe, family_of

FAMILY, SPEC = family_of('dots_ocr')
SETTINGS = FAMILY.default_settings('dots_ocr')


def test_resize_is_qwen_vl_utils_fetch_image():
    from qwen_vl_utils import fetch_image, smart_resize
    rng, mismatches = random.Random(1), []
    for _ in range(3000):
        width = int(math.exp(rng.uniform(0, math.log(9000)))) + 1
        height = int(math.exp(rng.uniform(0, math.log(9000)))) + 1
        if max(width, height) / min(width, height) > 200:
            continue
        geo, _ = SETTINGS.predict(width=width, height=height)
        rh, rw = smart_resize(height, width, factor=28, min_pixels=4 * 28 * 28, max_pixels=16384 * 28 * 28)
        if (geo.resized_width, geo.resized_height, geo.num_tokens) != (rw, rh, rh * rw // 28 // 28):
            mismatches.append((width, height))
    assert mismatches == []
    for width, height in [(640, 480), (33, 2000), (3000, 20)]:  # the template's own call, on real images
        image = fetch_image({'image': Image.new('RGB', (width, height))})
        geo, _ = SETTINGS.predict(width=width, height=height)
        assert image.size == (geo.resized_width, geo.resized_height)


def test_no_env_and_no_row_limit_reaches_fetch_image():
    assert FAMILY.settings_for('dots_ocr', env={'MAX_PIXELS': '50176'}) == FAMILY.settings_for('dots_ocr', env={})
    plain, _ = SETTINGS.predict(width=2000, height=1000)
    row, clamp = SETTINGS.predict(width=2000, height=1000, row_kwargs={'min_pixels': 10 ** 7})
    assert (row.resized_width, row.resized_height) == (plain.resized_width, plain.resized_height) and clamp is None
    # ... but a row's max_pixels is ms-swift's own pre-rescale (Template._get_max_pixels), as for every template.
    shrunk, clamp = SETTINGS.predict(width=2000, height=1000, row_kwargs={'max_pixels': 200_000})
    assert clamp == 'max_pixels' and shrunk.resized_width * shrunk.resized_height < 250_000


def test_ms_swift_dots_template_cannot_encode_with_this_transformers():
    # DotsOCRTemplate._encode passes videos=None to the image processor, which transformers 5.19 refuses.
    # When either side changes, this fails: then verify dots_ocr by real encodes (verification='encode').
    from swift.template.templates.dots import DotsOCRTemplate
    from transformers import Qwen2VLImageProcessor
    assert 'videos=None' in inspect.getsource(DotsOCRTemplate._encode)
    with pytest.raises(TypeError, match='videos'):
        Qwen2VLImageProcessor()(images=[Image.new('RGB', (56, 56))], videos=None, return_tensors='pt',
                                do_resize=False)


def test_spec():
    row = describe('dots_ocr_geo')[0]
    assert (row['verification'], row['coords'], row['env']) == ('published_code', 'abs', [])
