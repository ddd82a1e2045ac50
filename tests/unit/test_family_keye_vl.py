"""Keye-VL 1.5 (keye-vl-utils, not installed): the resize pinned to keye-vl-utils 1.5.2's published
``smart_resize`` (tests/data/keye_vl, 5000 sizes), env limits, refusals, tokens."""
import json
from pathlib import Path

import pytest

from swift_ext.families import describe, family_of
from swift_ext.families.keye_vl import KEYE_FACTOR, KEYE_MAX_PIXELS, KEYE_MAX_RATIO, KEYE_MIN_PIXELS, keye_smart_resize
from swift_ext.geometry import Clamp, GeometryError

REFERENCE = json.loads((Path(__file__).parents[1] / 'data' / 'keye_vl' / 'reference.json').read_text())
FAMILY, SPEC = family_of('keye_vl_1_5')


def test_constants_are_the_published_ones():
    c = REFERENCE['constants']
    assert (c['IMAGE_FACTOR'], c['MIN_PIXELS'], c['MAX_PIXELS'], c['MAX_RATIO']) == (
        KEYE_FACTOR, KEYE_MIN_PIXELS, KEYE_MAX_PIXELS, KEYE_MAX_RATIO)


@pytest.mark.parametrize('key,limits', [('default', {}),
                                        ('min_200704_max_602112', {'min_pixels': 200704, 'max_pixels': 602112})])
def test_smart_resize_equals_the_published_one(key, limits):
    mismatches = []
    for row in REFERENCE[key]:
        width, height, *expected = row
        try:
            got = list(keye_smart_resize(width=width, height=height, **limits)[0])
        except GeometryError:
            got = 'refused'
        if got != ('refused' if isinstance(expected[0], str) else expected):
            mismatches.append((row, got))
    assert len(REFERENCE[key]) >= 1000 and mismatches == []


def test_env_limits_and_tokens():
    settings = FAMILY.settings_for('keye_vl_1_5', env={'MAX_PIXELS': '602112', 'MIN_PIXELS': '200704'})
    geo, clamp = settings.predict(width=4000, height=3000)
    assert clamp == Clamp.MAX_PIXELS and geo.resized_width * geo.resized_height <= 602112
    assert geo.grid == (1, geo.resized_height // 14, geo.resized_width // 14)
    assert geo.num_tokens == geo.grid[1] * geo.grid[2] // 4
    small, clamp = settings.predict(width=40, height=30)
    assert clamp == Clamp.MIN_PIXELS and small.resized_width * small.resized_height >= 200704


def test_extreme_ratio_is_refused_as_keye_vl_utils_refuses_it():
    with pytest.raises(GeometryError, match='MAX_RATIO'):
        FAMILY.default_settings('keye_vl_1_5').predict(width=4020, height=20)


def test_spec():
    row = describe('keye_vl_1_5_geo')[0]
    assert row['verification'] == 'published_code' and not row['boxes_trained']
    assert set(row['env']) == {'MIN_PIXELS', 'MAX_PIXELS', 'MAX_RATIO'}
