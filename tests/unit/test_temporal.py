"""Temporal answers and temporal IoU: the forms models write, the ground-truth forms, and hostile input."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swift_ext.temporal import parse_intervals, parse_solution_intervals, parse_time, temporal_iou, tiou_score
from swift_ext.video import predict_video_geometry

# name -> (completion, intervals read)
FORMS = {
    'json pair': ('[12.3, 25.0]', [[12.3, 25.0]]),
    'prose to': ('The action happens from 12.3 to 25.0.', [[12.3, 25.0]]),
    'answer tag with dash': ('<think>maybe 1 to 2</think><answer>12.3 - 25.0</answer>', [[12.3, 25.0]]),
    'answer tag wins over think': ('<think>[1, 2]</think> <answer>[3, 4]</answer>', [[3.0, 4.0]]),
    'after think': ('<think>[1, 2]</think> It is 3 - 4 s.', [[3.0, 4.0]]),
    'qwen3 time tags': ('from <12.3 seconds> to <25.0 seconds>', [[12.3, 25.0]]),
    'qwen3 tags in a row': ('<12.3 seconds><25.0 seconds>', [[12.3, 25.0]]),
    'units': ('12.3s-25s', [[12.3, 25.0]]),
    'words and units': ('from 12.3 seconds until 25 seconds', [[12.3, 25.0]]),
    'between and': ('between 3s and 7.5s', [[3.0, 7.5]]),
    'mm:ss': ('01:05 - 01:30', [[65.0, 90.0]]),
    'hh:mm:ss.f': ('1:02:03.5 to 1:02:09', [[3723.5, 3729.0]]),
    'clock in brackets': ('[00:10, 00:12.5]', [[10.0, 12.5]]),
    'several intervals': ('[[1, 2], [5, 7]]', [[1.0, 2.0], [5.0, 7.0]]),
    'several in prose': ('1 to 2 and again 5 to 7', [[1.0, 2.0], [5.0, 7.0]]),
    'reversed is swapped': ('[25, 12.3]', [[12.3, 25.0]]),
    'en dash': ('12.3–25.0', [[12.3, 25.0]]),
    'parentheses tilde': ('(3.5 ~ 9)', [[3.5, 9.0]]),
    'no interval': ('I do not know.', []),
    'a version number': ('version 1.2.3 - 4', []),
    'a bad clock': ('1:75 - 2:00', []),
    'scientific notation is not a time': ('[1e5, 3]', []),
}


@pytest.mark.parametrize('name', list(FORMS))
def test_answer_forms(name):
    completion, expected = FORMS[name]
    assert parse_intervals(completion) == expected


@pytest.mark.parametrize('solution,expected', [
    ([12.3, 25.0], [[12.3, 25.0]]),
    ('[12.3, 25.0]', [[12.3, 25.0]]),
    ([[1, 2], [4, 6]], [[1.0, 2.0], [4.0, 6.0]]),
    ('[[1, 2], [4, 6]]', [[1.0, 2.0], [4.0, 6.0]]),
    ({'start': 1, 'end': 2}, [[1.0, 2.0]]),
    ([{'start': 1, 'end': 2}], [[1.0, 2.0]]),
])
def test_solution_forms(solution, expected):
    assert parse_solution_intervals(solution) == expected


# name -> (completion, solution, keyword arguments): tiou_score must return None or a float in [0, 1].
HOSTILE = {
    'completion None': (None, [1, 2], {}),
    'completion bytes': (b'[1, 2]', [1, 2], {}),
    'completion an int': (5, [1, 2], {}),
    'huge completion': ('[1, 2] ' * 200000, [1, 2], {}),
    'backtracking bait': ('1' * 50000 + ' to ', [1, 2], {}),
    'many intervals': ('[1, 2], ' * 5000, [1, 2], {}),
    'huge numbers': ('[1' + '0' * 400 + ', 2' + '0' * 400 + ']', [1, 2], {}),
    'nan text': ('[nan, inf]', [1, 2], {}),
    'solution None': ('[1, 2]', None, {}),
    'solution reversed': ('[1, 2]', [2, 1], {}),
    'solution empty interval': ('[1, 2]', [1, 1], {}),
    'solution negative': ('[1, 2]', [-2, 1], {}),
    'solution nan': ('[1, 2]', [math.nan, 1], {}),
    'solution inf': ('[1, 2]', [0, math.inf], {}),
    'solution bools': ('[1, 2]', [True, 2], {}),
    'solution strings': ('[1, 2]', ['1', '2'], {}),
    'solution deep json': ('[1, 2]', '[' * 50000 + ']' * 50000, {}),
    'solution bad json': ('[1, 2]', '[1, 2', {}),
    'solution huge json': ('[1, 2]', '[' + '1, 2], [' * 20000 + '1, 2]', {}),
    'solution an object': ('[1, 2]', object(), {}),
    'solution too many': ('[1, 2]', [[1, 2]] * 101, {}),
    'window reversed': ('[1, 2]', [1, 2], {'window': (5, 1)}),
    'window nan': ('[1, 2]', [1, 2], {'window': (math.nan, 5)}),
    'window a string': ('[1, 2]', [1, 2], {'window': 'all'}),
    'window short': ('[1, 2]', [1, 2], {'window': (1,)}),
    'ground truth outside the window': ('[1, 2]', [10, 12], {'window': (0, 5)}),
    'offset nan': ('[1, 2]', [1, 2], {'offset': math.nan}),
    'offset a string': ('[1, 2]', [1, 2], {'offset': 'x'}),
    'tolerance inf': ('[1, 2]', [1, 2], {'tolerance': math.inf}),
}


@pytest.mark.parametrize('name', list(HOSTILE))
def test_hostile_never_raises(name):
    completion, solution, kwargs = HOSTILE[name]
    score = tiou_score(completion, solution, **kwargs)
    assert score is None or 0.0 <= score <= 1.0


@pytest.mark.parametrize('name,expected', [('solution reversed', None), ('solution bad json', None),
                                           ('ground truth outside the window', None), ('completion None', 0.0),
                                           ('nan text', 0.0), ('window reversed', None)])
def test_hostile_outcomes(name, expected):
    completion, solution, kwargs = HOSTILE[name]
    assert tiou_score(completion, solution, **kwargs) == expected


def test_exact_interval_scores_one_in_every_form():
    for completion in ('[12.3, 25.0]', '12.3 to 25.0', '<answer>12.3 - 25.0</answer>',
                       '<12.3 seconds> to <25.0 seconds>', '00:12.3 - 00:25'):
        assert tiou_score(completion, '[12.3, 25.0]') == 1.0, completion


def test_window_offset_and_tolerance_from_the_geometry():
    geo = predict_video_geometry(width=96, height=72, total_frames=300, video_fps=30.0, version='v3', mode='vllm',
                                 row_kwargs={'video_start': 4.0, 'video_end': 9.0})
    window = (geo.video_start, geo.video_end)
    # A vLLM-mode Qwen3-VL answer counts from the clip's first frame: 1-3 s there is 5-7 s of the source.
    assert tiou_score('[1, 3]', [5, 7], window=window, offset=geo.timestamp_origin) == 1.0
    # Ground truth reaching past the clip is cut to what the model saw.
    assert tiou_score('[8, 9]', [8, 12], window=window) == 1.0
    # A bound within one frame pair of the truth counts as exact.
    assert tiou_score('[5.4, 7]', [5, 7], window=window, tolerance=geo.sampling_step) == 1.0
    assert tiou_score('[5.4, 7]', [5, 7], window=window) < 1.0


def test_parse_time():
    assert parse_time('1:05') == 65.0 and parse_time('01:02:03.5') == 3723.5 and parse_time('1:60') is None


intervals = st.lists(st.tuples(st.floats(0, 1000), st.floats(0, 1000)).map(lambda t: [min(t), max(t)]),
                     min_size=1, max_size=5)


@settings(max_examples=500, deadline=None)
@given(a=intervals, b=intervals)
def test_temporal_iou_is_a_symmetric_score(a, b):
    score = temporal_iou(a, b)
    assert 0.0 <= score <= 1.0
    assert score == pytest.approx(temporal_iou(b, a))
    if any(e > s for s, e in a):
        assert temporal_iou(a, a) == pytest.approx(1.0)


@settings(max_examples=300, deadline=None)
@given(start=st.floats(0, 500), length=st.floats(0.1, 100), shift=st.floats(-200, 200))
def test_single_interval_iou_formula(start, length, shift):
    a, b = [start, start + length], [start + shift, start + shift + length]
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    assert temporal_iou([a], [b]) == pytest.approx(inter / (2 * length - inter), abs=1e-9)
