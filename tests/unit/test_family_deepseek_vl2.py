"""DeepSeek-VL2 (deepseek_vl2 package, not installed): candidate choice and token count pinned to the
published processor (tests/data/deepseek_vl2, 4240 cases), the padding to Pillow's own ImageOps.pad."""
import json
import random
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from swift_ext.families import describe, family_of
from swift_ext.families.deepseek_vl2 import VL2_CANDIDATES, pil_pad_layout, select_best_resolution, vl2_tokens

REFERENCE = json.loads((Path(__file__).parents[1] / 'data' / 'deepseek_vl2' / 'reference.json').read_text())
FAMILY, SPEC = family_of('deepseek_vl2')
SETTINGS = FAMILY.default_settings('deepseek_vl2')


def test_candidates_are_those_of_the_table():
    assert [list(c) for c in VL2_CANDIDATES] == REFERENCE['candidates']


def test_select_best_resolution_equals_the_published_one():
    rows = REFERENCE['select_best_resolution']
    mismatches = [r for r in rows if list(select_best_resolution(width=r[0], height=r[1],
                                                                 candidates=VL2_CANDIDATES)) != r[2:]]
    assert len(rows) == 4000 and mismatches == []


def test_tokens_and_tiles_equal_tokenize_with_images():
    mismatches = []
    for width, height, cropping, tokens, cols, rows, local_w, local_h in REFERENCE['tokenize_with_images']:
        geo = FAMILY.geometry(SETTINGS, width=width, height=height, cropping=cropping, name='image')
        extra = dict(geo.extra)
        if (geo.num_tokens, geo.tile_cols, geo.tile_rows, extra['local_width'], extra['local_height']) != (
                tokens, cols, rows, local_w, local_h):
            mismatches.append((width, height, cropping))
    assert len(REFERENCE['tokenize_with_images']) == 240 and mismatches == []


def test_pad_layout_is_pillows_imageops_pad():
    rng, mismatches = random.Random(5), []
    for _ in range(300):
        width, height = rng.randint(1, 3000), rng.randint(1, 3000)
        canvas = rng.choice(VL2_CANDIDATES + ((1024, 1024), (640, 640)))
        image = Image.new('L', (width, height), 255)
        padded = ImageOps.pad(image, canvas, color=0)
        box = padded.getbbox()  # the content: white on the black bars
        cw, ch, left, top = pil_pad_layout(width=width, height=height, canvas_width=canvas[0], canvas_height=canvas[1])
        if box != (left, top, left + cw, top + ch):
            mismatches.append((width, height, canvas, box))
    assert mismatches == []


def test_more_than_two_images_is_one_tile():
    assert vl2_tokens(cols=1, rows=1) == 14 * 15 + 1 + 14 * 15 == 421
    flat = FAMILY.geometry(SETTINGS, width=2000, height=500, cropping=False, name='image')
    assert (flat.num_tokens, flat.tile_cols, flat.tile_rows) == (421, 1, 1)


def test_boxes_are_0_999_of_the_image_not_the_canvas():
    geo, _ = SETTINGS.predict(width=800, height=400)
    assert geo.canvas_width is None  # the frame of the answers is the image itself
    assert geo.from_model_frame([0, 0, 999, 999], 'norm999') == pytest.approx([0, 0, 800, 400])


def test_spec():
    row = describe('deepseek_vl2_geo')[0]
    assert (row['verification'], row['coords'], row['box_styles'][0]) == ('published_code', 'norm999', 'deepseek_det')
