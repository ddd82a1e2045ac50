"""Kimi-VL (remote code): the resize pinned to the published image processor's ``rescale``
(tests/data/kimi_vl, 9000 sizes), tokens, clamps and refusals."""
import json
from dataclasses import replace
from pathlib import Path

import pytest

from swift_ext.families import describe, family_of
from swift_ext.geometry import Clamp, GeometryError

REFERENCE = json.loads((Path(__file__).parents[1] / 'data' / 'kimi_vl' / 'reference.json').read_text())
FAMILY, SPEC = family_of('kimi_vl')
BASE = FAMILY.default_settings('kimi_vl')
SETTINGS = {'4096_pad': BASE, '16384_pad': replace(BASE, in_token_limit=16384),
            '4096_crop': replace(BASE, pad_input=False)}


def _frame(settings, width, height):
    try:
        geo, _ = FAMILY.resize(settings, width=width, height=height, row_kwargs={}, name='image')
    except GeometryError:
        return None
    return [geo.canvas_width, geo.canvas_height]


@pytest.mark.parametrize('key', sorted(SETTINGS))
def test_frame_equals_the_published_rescale(key):
    rows, mismatches = REFERENCE[key], []
    assert len(rows) == 3000
    for row in rows:
        width, height, *expected = row
        refused = isinstance(expected[0], str) or 0 in expected  # a zero frame cannot be patchified
        got = _frame(SETTINGS[key], width, height)
        if (got is None) != refused or (not refused and got != expected):
            mismatches.append((row, got))
    assert mismatches == []


def test_published_table_has_refusals_and_limits():
    # The table exercises every branch: the patch budget, padding, the pos-emb refusal.
    rows = REFERENCE['4096_pad']
    assert any(isinstance(r[2], str) and 'Exceed pos emb' in r[2] for r in rows)
    assert any(not isinstance(r[2], str) and (r[0] // 14) * (r[1] // 14) > 4096 for r in rows)


def test_tokens_are_the_padded_grid_over_the_merge_kernel():
    geo, clamp = FAMILY.resize(BASE, width=640, height=480, row_kwargs={}, name='image')
    assert (geo.resized_width, geo.resized_height) == (640, 480)  # content: no budget resize
    assert (geo.canvas_width, geo.canvas_height, geo.pad_left, geo.pad_top) == (644, 504, 0, 0)
    assert geo.num_tokens == (504 // 14) * (644 // 14) // 4 and clamp is None


def test_patch_budget_is_a_pixel_cap():
    geo, clamp = FAMILY.resize(BASE, width=4000, height=3000, row_kwargs={}, name='image')
    assert clamp == Clamp.MAX_PIXELS and (geo.resized_width // 14) * (geo.resized_height // 14) <= 4096
    big, _ = FAMILY.resize(SETTINGS['16384_pad'], width=4000, height=3000, row_kwargs={}, name='image')
    assert big.num_tokens > 3 * geo.num_tokens


def test_exceeding_the_position_embedding_is_refused_with_the_rule():
    with pytest.raises(GeometryError, match='512 patches'):
        FAMILY.resize(BASE, width=7200, height=14, row_kwargs={}, name='strip.png')


def test_crop_mode_maps_boxes_through_the_crop():
    geo, _ = FAMILY.resize(SETTINGS['4096_crop'], width=100, height=60, row_kwargs={}, name='image')
    assert (geo.canvas_width, geo.canvas_height, geo.pad_left, geo.pad_top) == (98, 56, -1, -2)
    assert geo.to_model_frame([1, 2, 99, 58], 'abs') == [0, 0, 98, 56]


def test_spec_is_published_code_without_trained_boxes():
    row = describe('kimi_vl_geo')[0]
    assert row['verification'] == 'published_code' and not row['boxes_trained'] and row['coords'] == 'norm1'
