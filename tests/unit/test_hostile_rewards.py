"""Rewards on hostile calls: they never raise, and never mislead silently (None + one warning per cause).

Each case is a reward call as ms-swift makes it (``reward(completions, **columns)``), with columns a
dataset no one here wrote could hold.
"""
import base64
import io
import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

import swift_ext.plugin  # noqa: F401
from swift_ext import store
from swift_ext.boxes import parse_boxes
from swift_ext.rewards import SHIPPED, GeoIoU, GeoReward, geo_reward
from swift_ext.scoring import parse_solution
from swift_ext.warn import reset_warnings

EXACT = '[{"bbox_2d": [64.4, 47.6, 322.0, 238.0], "label": "box"}]'  # [64, 48, 320, 240] of 640x480, resized frame
GT = [64, 48, 320, 240]


class _Args:
    template = 'qwen2_5_vl_geo'


@pytest.fixture(autouse=True)
def fresh_process_state():
    store.reset()
    reset_warnings()


@pytest.fixture()
def landscape(sample_images):
    return sample_images['landscape']  # 640x480


def _png_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# name -> kwargs builder (path of a 640x480 PNG/JPEG) for one sample: calls that must not raise.
HOSTILE_CALLS = {
    'unhashable row limit': lambda p: {'images': [[p]], 'chat_template_kwargs': [{'max_pixels': [1, 2]}]},
    'dict row limit': lambda p: {'images': [[p]], 'chat_template_kwargs': [{'min_pixels': {'a': 1}}]},
    'chat_template_kwargs a string': lambda p: {'images': [[p]], 'chat_template_kwargs': ['{"max_pixels": 5}']},
    'chat_template_kwargs not a list': lambda p: {'images': [[p]], 'chat_template_kwargs': {'max_pixels': 5}},
    'path an int': lambda p: {'images': [[{'bytes': None, 'path': 5}]]},
    'path a list': lambda p: {'images': [[{'bytes': None, 'path': [p]}]]},
    'image None': lambda p: {'images': [[None]]},
    'image an object': lambda p: {'images': [[object()]]},
    'bytes an int': lambda p: {'images': [[{'bytes': 5}]]},
    'bytes a non-image string': lambda p: {'images': [[{'bytes': 'not base64 at all!', 'path': None}]]},
    'images a string': lambda p: {'images': p},
    'images an int': lambda p: {'images': 3},
    'images a dict per sample': lambda p: {'images': [{'bytes': None, 'path': p}]},
    'solution an object': lambda p: {'images': [[p]], 'solution': [object()]},
    'solution deep JSON': lambda p: {'images': [[p]], 'solution': ['[' * 50000 + ']' * 50000]},
    'image_index a string': lambda p: {'images': [[p]], 'solution': [GT], 'image_index': ['0']},
    'image_index a float': lambda p: {'images': [[p]], 'solution': [GT], 'image_index': [0.0]},
    'image_index a list': lambda p: {'images': [[p]], 'solution': [GT], 'image_index': [[0]]},
    'a column named self': lambda p: {'images': [[p]], 'solution': [GT], 'self': ['x']},
    'columns named like the arguments': lambda p: {'images': [[p]], 'solution': [GT], 'settings': [{'a': 1}],
                                                   'image_geometry': ['x'], 'completion': ['y']},
    'a column named dataset_settings too': lambda p: {'images': [[p]], 'solution': [GT], 'settings': [1],
                                                      'dataset_settings': [2]},
    'trainer_state and friends': lambda p: {'images': [[p]], 'solution': [GT], 'trainer_state': object(),
                                            'dataset': None, 'prompt_id': ['a']},
}


@pytest.mark.parametrize('case', list(HOSTILE_CALLS))
def test_rewards_never_raise(landscape, case):
    kwargs = HOSTILE_CALLS[case](landscape)
    for name, cls in SHIPPED.items():
        out = cls(args=_Args())([EXACT], **kwargs)
        assert len(out) == 1 and (out[0] is None or 0.0 <= out[0] <= 1.0), (name, out)


def test_odd_completions_never_raise(landscape):
    for cls in SHIPPED.values():
        out = cls(args=_Args())([None, 5, b'[1,2,3,4]', EXACT], images=[[landscape]] * 4, solution=[GT] * 4)
        assert len(out) == 4
        assert cls(args=_Args())(None, images=[[landscape]], solution=[GT]) is not None


@pytest.mark.parametrize('columns', [
    {'settings': [{'a': 1}]}, {'image_geometry': ['x']}, {'completion': ['y']}, {'self': ['z']},
    {'settings': [1], 'image_geometry': [2], 'completion': [3], 'self': [4]}])
def test_columns_named_like_reserved_keywords_do_not_cost_the_score(landscape, columns, caplog):
    with caplog.at_level(logging.WARNING):
        out = GeoIoU(args=_Args())([EXACT], images=[[landscape]], solution=[GT], **columns)
    assert out == [pytest.approx(1.0)]
    assert any('arrive as' in m and 'dataset_' in m for m in _warnings(caplog))


def test_user_rewards_get_renamed_columns(landscape):
    seen = {}

    class Spy(GeoReward):
        def score(self, completion, *, image_geometry, settings, **row):
            seen.update(row)
            return 1.0 if image_geometry and settings is not None else None

    assert Spy(args=_Args())(['x'], images=[[landscape]], settings=['mine'], completion=['c'],
                             dataset_settings=['taken']) == [1.0]
    assert seen['dataset_settings'] == 'taken' and seen['dataset_dataset_settings'] == 'mine'
    assert seen['dataset_completion'] == 'c'


def test_string_bytes_and_every_form_score(landscape, tmp_path, monkeypatch):
    # Base64 in `bytes` or in `path`, raw bytes, a data URL and a relative path all get geometry.
    monkeypatch.chdir(os.path.dirname(landscape))
    data = _png_bytes(landscape)
    text = base64.b64encode(data).decode()
    forms = [{'bytes': text, 'path': None}, {'bytes': None, 'path': text}, {'bytes': data, 'path': None},
             'data:image/jpeg;base64,' + text, os.path.basename(landscape), landscape]
    out = GeoIoU(args=_Args())([EXACT] * len(forms), images=[[f] for f in forms], solution=[GT] * len(forms))
    assert out == [pytest.approx(1.0)] * len(forms)


def test_long_base64_warnings_are_cut(tmp_path, caplog):
    # A ~650 KB base64 image that is not a valid picture: the warning names it by sha1 and size.
    text = base64.b64encode(b'\x89PNG\r\n\x1a\n' + os.urandom(480_000)).decode()
    with caplog.at_level(logging.WARNING):
        out = GeoIoU(args=_Args())([EXACT], images=[[{'bytes': None, 'path': text}]], solution=[GT])
    assert out == [None]
    messages = _warnings(caplog)
    assert messages and all(len(m) < 1000 for m in messages)
    assert any('sha1:' in m and 'bytes' in m for m in messages)


def test_out_of_range_image_index_is_none_with_one_warning(sample_images, caplog):
    images = [[sample_images['landscape'], sample_images['square']]]
    reward = GeoIoU(args=_Args())
    with caplog.at_level(logging.WARNING):
        assert reward([EXACT] * 2, images=images * 2, solution=[GT] * 2, image_index=[2, -1]) == [None, None]
        assert reward([EXACT], images=images, solution=[GT], image_index=[5]) == [None]
    assert len([m for m in _warnings(caplog) if 'names no image' in m]) == 1
    # A numpy integer is an index; image 1 (448x448) is not image 0.
    square_exact = reward([EXACT], images=images, solution=[GT], image_index=[np.int64(1)])
    assert square_exact[0] is not None and square_exact[0] < 1.0
    assert reward([EXACT], images=images, solution=[GT], image_index=[0]) == [pytest.approx(1.0)]


def test_ground_truth_outside_the_image_warns_once(landscape, caplog):
    # 0-1000 units on a 640x480 image: a perfect answer in those units scores low, and is no longer silent.
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            out = GeoIoU(args=_Args())([EXACT], images=[[landscape]], solution=[[100, 100, 900, 900]])
            assert out[0] is not None and out[0] < 0.5
    outside = [m for m in _warnings(caplog) if 'lies outside its 640x480 image' in m]
    assert len(outside) == 1 and '0-1000 units' in outside[0]
    caplog.clear()
    GeoIoU(args=_Args())([EXACT], images=[[landscape]], solution=[[0, 0, 641, 481]])  # a pixel of slack: no warning
    assert not [m for m in _warnings(caplog) if 'outside' in m]


# --- README's own-reward example, run as written (it goes through the shared parse_solution) ---------------
@geo_reward('readme_center_hit')
def center_hit(completion, *, image_geometry, settings, solution=None, **row):
    """1.0 when the first predicted box's centre falls inside a ground-truth box."""
    truth = parse_solution(solution)  # one box, a list of boxes, or a JSON string of either
    if not image_geometry or truth is None:
        return None  # no opinion: skipped, not scored 0
    boxes = parse_boxes(completion)
    if not boxes:
        return 0.0
    x1, y1, x2, y2 = image_geometry[0].from_model_frame(boxes[0], settings.coords)  # original pixels
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return float(any(gx1 <= cx <= gx2 and gy1 <= cy <= gy2 for gx1, gy1, gx2, gy2 in truth))


@pytest.mark.parametrize('solution,expected', [
    ([64, 48, 320, 240], 1.0),                                        # one box
    ([[400, 300, 500, 400], [64, 48, 320, 240]], 1.0),               # a list of boxes
    ('[[64, 48, 320, 240]]', 1.0),                                    # a JSON string
    ('[{"bbox_2d": [64, 48, 320, 240], "label": "cat"}]', 1.0),       # Qwen's own format, as JSON
    ([400, 300, 500, 400], 0.0),                                      # a miss
    ('not json', None), ([], None), (None, None),                     # unusable: no opinion
])
def test_readme_reward_handles_every_solution_form(landscape, solution, expected):
    out = center_hit(args=_Args())([EXACT], images=[[landscape]], solution=[solution])
    assert out == [expected]


def test_reward_state_is_picklable_after_hostile_calls(landscape):
    import pickle
    reward = GeoIoU(args=_Args())
    reward([EXACT], images=[[{'bytes': 5}]], solution=[GT])
    assert pickle.loads(pickle.dumps(reward)).template == 'qwen2_5_vl_geo'


def test_data_url_geometry_equals_the_file(landscape):
    data = _png_bytes(landscape)
    url = 'data:image/png;base64,' + base64.b64encode(data).decode()
    buf = io.BytesIO(data)
    size = Image.open(buf).size
    out = GeoIoU(args=_Args())([EXACT], images=[[url]], solution=[json.dumps(GT)])
    assert size == (640, 480) and out == [pytest.approx(1.0)]
