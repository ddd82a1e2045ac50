"""Ovis2.5 (remote code, needs the model): the resize pinned to the published
``VisualTokenizer.smart_resize`` (tests/data/ovis2_5, 9000 sizes), the template's MAX_PIXELS pre-rescale, tokens."""
import json
from pathlib import Path

import pytest

from swift_ext.families import describe, family_of
from swift_ext.families.ovis2_5 import ovis_smart_resize
from swift_ext.geometry import Clamp, swift_rescaled_size

REFERENCE = json.loads((Path(__file__).parents[1] / 'data' / 'ovis2_5' / 'reference.json').read_text())
FAMILY, SPEC = family_of('ovis2_5')
LIMITS = {'32_default': (32, 448 * 448, 1344 * 1792), '28_default': (28, 448 * 448, 1344 * 1792),
          '32_small': (32, 100 * 100, 512 * 512)}


@pytest.mark.parametrize('key', sorted(LIMITS))
def test_smart_resize_equals_the_published_one(key):
    factor, low, high = LIMITS[key]
    mismatches = [row for row in REFERENCE[key]
                  if list(ovis_smart_resize(width=row[0], height=row[1], factor=factor, min_pixels=low,
                                            max_pixels=high)[0]) != row[2:]]
    assert len(REFERENCE[key]) == 3000 and mismatches == []


def test_template_prerescale_at_max_pixels_then_tokens():
    settings = FAMILY.default_settings('ovis2_5')
    geo, clamp = settings.predict(width=6000, height=4000)
    w, h = swift_rescaled_size(width=6000, height=4000, max_pixels=1344 * 1792)
    (rw, rh), _ = ovis_smart_resize(width=w, height=h)
    assert clamp == Clamp.MAX_PIXELS and (geo.resized_width, geo.resized_height) == (rw, rh)
    assert geo.num_tokens == (rh // 16) * (rw // 16) // 4 + 2  # atoms + the two indicator tokens
    # A row's max_pixels replaces MAX_PIXELS as the pre-rescale (Template._get_max_pixels).
    row, _ = settings.predict(width=6000, height=4000, row_kwargs={'max_pixels': 500_000})
    w, h = swift_rescaled_size(width=6000, height=4000, max_pixels=500_000)
    assert (row.resized_width, row.resized_height) == ovis_smart_resize(width=w, height=h)[0]


def test_small_and_extreme_images_are_resized_not_refused():
    settings = FAMILY.default_settings('ovis2_5')
    geo, clamp = settings.predict(width=10, height=5)
    assert clamp == Clamp.MIN_PIXELS and geo.resized_width * geo.resized_height >= 448 * 448
    geo, _ = settings.predict(width=9000, height=20)
    assert geo.num_tokens > 2


def test_env_limits():
    settings = FAMILY.settings_for('ovis2_5', env={'MAX_PIXELS': '262144', 'MIN_PIXELS': '1024'})
    assert (settings.max_pixels, settings.min_pixels) == (262144, 1024)
    geo, _ = settings.predict(width=2000, height=2000)
    assert geo.resized_width * geo.resized_height <= 262144


def test_spec():
    row = describe('ovis2_5_geo')[0]
    assert row['verification'] == 'published_code' and not row['boxes_trained']
