"""The geometry core (swift_ext.geometry): ImageGeometry, the clamp vocabulary, the shared rounding.

Each family's own arithmetic is pinned to its library in tests/unit/test_family_<name>.py.
"""
import subprocess
import sys

import pytest

from swift_ext.families.internvl import internvl_geometry
from swift_ext.families.qwen import qwen_geometry
from swift_ext.geometry import Clamp, ImageGeometry, fit_clamp, round_within


@pytest.mark.parametrize('geo,box,resized', [
    (qwen_geometry(width=640, height=480), [64, 48, 320, 240], [64.4, 47.6, 322.0, 238.0]),
    (internvl_geometry(width=800, height=600), [0, 0, 800, 600], [0, 0, 1792, 1344]),
])
def test_box_mapping_round_trip(geo, box, resized):
    assert geo.to_resized(box) == pytest.approx(resized)
    assert geo.to_original(geo.to_resized(box)) == pytest.approx(box)


def test_to_dict_round_trip():
    geo = qwen_geometry(width=640, height=480)
    assert ImageGeometry.from_dict(geo.to_dict()) == geo
    assert geo.to_dict()['grid'] == [1, 34, 46]


def test_import_is_light():
    # Rewards and log tools import the core in milliseconds: no torch, PIL or swift.
    code = ('import sys, swift_ext.geometry, swift_ext.settings, swift_ext.store; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "PIL", "swift", "torchvision")))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '[]'


@pytest.mark.parametrize('size,resized,clamp', [
    ((30, 30), (336, 336), Clamp.UPSCALE),
    ((336, 336), (336, 336), None),
    ((4000, 3000), (672, 504), Clamp.CANVAS_FIT),
    ((2000, 400), (896, 896), Clamp.CANVAS_FIT),  # a stretch that shrinks a side is a fit, not an upscale
    ((100, 100), (100, 101), Clamp.UPSCALE),
])
def test_fit_clamp(size, resized, clamp):
    assert fit_clamp(width=size[0], height=size[1], resized_width=resized[0], resized_height=resized[1]) == clamp
    assert fit_clamp(width=size[0], height=size[1], resized_width=resized[0], resized_height=resized[1],
                     shrunk=Clamp.LONGEST_EDGE) == (Clamp.LONGEST_EDGE if clamp == Clamp.CANVAS_FIT else clamp)


def test_round_within_names_the_branch():
    kwargs = dict(factor=28, min_pixels=3136, max_pixels=50176)
    assert round_within(width=640, height=480, factor=28, min_pixels=3136, max_pixels=12845056) == ((644, 476), None)
    assert round_within(width=1920, height=1080, **kwargs) == ((280, 168), Clamp.MAX_PIXELS)
    assert round_within(width=30, height=30, **kwargs) == ((56, 56), Clamp.MIN_PIXELS)
    # Counted over two frames (GLM), the cap halves.
    assert round_within(width=200, height=200, factor=28, min_pixels=0, max_pixels=2 * 196 * 196, frames=2) == \
        ((196, 196), None)


def test_scale_and_max_scale():
    geo = ImageGeometry(original_width=30, original_height=60, resized_width=336, resized_height=336, num_tokens=1)
    assert geo.scale == (11.2, 5.6) and geo.max_scale == 11.2
    shrunk = ImageGeometry(original_width=4000, original_height=3000, resized_width=672, resized_height=504,
                           num_tokens=1)
    assert shrunk.max_scale == pytest.approx(0.168)


def test_clamp_is_its_string():
    # Records, review and plan read `clamped` as a string: a member is equal to and serialises as its value.
    import json
    assert Clamp.CANVAS_FIT == 'canvas_fit' and str(Clamp.UPSCALE) == 'upscale'
    assert json.dumps({'clamped': Clamp.UPSCALE}) == '{"clamped": "upscale"}'


def test_norm999_is_the_frame_over_999():
    # DeepSeek-VL2 / DeepSeek-OCR post-processing: x / 999 * image width.
    from swift_ext.geometry import COORDS
    geo = ImageGeometry(original_width=800, original_height=400, resized_width=768, resized_height=384, num_tokens=1)
    assert 'norm999' in COORDS
    assert geo.to_model_frame([0, 0, 800, 400], 'norm999') == [0, 0, 999, 999]
    assert geo.from_model_frame([999, 999, 999, 999], 'norm999') == pytest.approx([800, 400, 800, 400])
