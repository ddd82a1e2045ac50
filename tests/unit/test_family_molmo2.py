"""Molmo2 (remote code): crop tiling, pooled grids and token counts pinned to the published
``image_processing_molmo2.py`` / ``processing_molmo2.py`` (tests/data/molmo2, 2500 sizes)."""
import json
from dataclasses import replace
from pathlib import Path

from swift_ext.families import describe, family_of
from swift_ext.families.molmo2 import molmo2_grids, molmo2_tokens

REFERENCE = json.loads((Path(__file__).parents[1] / 'data' / 'molmo2' / 'reference.json').read_text())
FAMILY, SPEC = family_of('molmo2')
SETTINGS = FAMILY.default_settings('molmo2')


def test_grids_and_tilings_equal_the_published_processor():
    mismatches = []
    for row in REFERENCE['image_grids']:
        (rows, cols), grid = molmo2_grids(SETTINGS, width=row[0], height=row[1])
        if list(grid) + [rows, cols] != row[2:]:
            mismatches.append(row)
    assert len(REFERENCE['image_grids']) == 2500 and mismatches == []


def test_tokens_equal_get_image_tokens():
    mismatches = []
    for *grid, use_col, single_col, single_start, tokens in REFERENCE['get_image_tokens']:
        settings = replace(SETTINGS, image_use_col_tokens=use_col, use_single_crop_col_tokens=single_col,
                           use_single_crop_start_token=single_start)
        if molmo2_tokens(settings, tuple(grid)) != tokens:
            mismatches.append(grid)
    assert len(REFERENCE['get_image_tokens']) >= 30 and mismatches == []


def test_geometry_is_the_crop_canvas():
    geo, clamp = SETTINGS.predict(width=1000, height=600)
    (rows, cols), grid = molmo2_grids(SETTINGS, width=1000, height=600)
    assert (geo.resized_width, geo.resized_height) == (cols * 266 + 112, rows * 266 + 112)
    assert geo.num_tiles == rows * cols + 1 and dict(geo.extra)['image_grid'] == grid
    assert geo.num_tokens == molmo2_tokens(SETTINGS, grid)


def test_spec_has_no_trained_boxes():
    row = describe('molmo2_geo')[0]
    assert row['verification'] == 'published_code' and not row['boxes_trained'] and 'points' in row['coords_source']
