"""Tests for swift_ext.scoring: IoU, optimal matching, ground truth, and the full score."""
import doctest
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swift_ext import scoring
from swift_ext.boxes import box_style, is_well_formed, parse_boxes
from swift_ext.families.internvl import internvl_geometry
from swift_ext.families.qwen import qwen_geometry
from swift_ext.geometry import COORDS
from swift_ext.scoring import MAX_GT_BOXES, box_iou, iou_score, matched_iou, parse_solution

QWEN = qwen_geometry(width=640, height=480)  # Qwen2/2.5-VL: resized to 644 x 476
QWEN3 = qwen_geometry(width=640, height=480, patch_size=16)  # Qwen3-VL: 640 x 480
INTERNVL = internvl_geometry(width=800, height=600)  # 4 x 3 tiles: canvas 1792 x 1344
GEOMETRIES = [QWEN, QWEN3, INTERNVL]


def test_geometries_are_the_real_ones():
    assert (QWEN.resized_width, QWEN.resized_height) == (644, 476)
    assert (INTERNVL.resized_width, INTERNVL.resized_height) == (1792, 1344)


def test_import_is_light():
    # scipy and numpy load on the first multi-box match, torch and swift never
    code = ('import sys, swift_ext.scoring; '
            'print(sorted(m for m in ("scipy", "numpy", "torch", "swift") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == '[]'


class TestBoxIou:
    @pytest.mark.parametrize('a, b, expected', [
        # identical
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        # half overlap: 50 / 150
        ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3),
        # one inside the other: 25 / 100
        ([0, 0, 10, 10], [0, 0, 5, 5], 0.25),
        # touching edges have no area in common
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),
        # disjoint
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        # two zero-area boxes: no union, no NaN
        ([5, 5, 5, 5], [5, 5, 5, 5], 0.0),
    ])
    def test_cases(self, a, b, expected):
        assert box_iou(a, b) == pytest.approx(expected)
        assert box_iou(b, a) == box_iou(a, b)


P1, P2 = [0.5, 0, 10.5, 10], [-2, 0, 8, 10]
A, B = [0, 0, 10, 10], [2, 0, 12, 10]


def greedy_iou(pred, gt):
    """Greedy matching (best pair first), to show the optimal matching does better."""
    pairs = sorted(((box_iou(p, g), i, j) for i, p in enumerate(pred) for j, g in enumerate(gt)),
                   reverse=True)
    used_p, used_g, total = set(), set(), 0.0
    for iou, i, j in pairs:
        if i not in used_p and j not in used_g:
            used_p.add(i), used_g.add(j)
            total += iou
    return total / max(len(pred), len(gt))


class TestMatchedIou:
    @pytest.mark.parametrize('pred, gt, expected', [
        # one box against one box is plain IoU
        ([[0, 0, 10, 10]], [[5, 0, 15, 10]], 1 / 3),
        # order does not matter
        ([[20, 20, 30, 30], [0, 0, 10, 10]], [[0, 0, 10, 10], [20, 20, 30, 30]], 1.0),
        # an extra predicted box costs: 1 / 2
        ([[0, 0, 10, 10], [50, 50, 60, 60]], [[0, 0, 10, 10]], 0.5),
        # ten guesses for one object: 1 / 10
        ([[0, 0, 10, 10]] + [[50, 50, 60, 60]] * 9, [[0, 0, 10, 10]], 0.1),
        # the same box twice cannot match two objects
        ([[0, 0, 10, 10], [0, 0, 10, 10]], [[0, 0, 10, 10], [20, 20, 30, 30]], 0.5),
        # a missed object costs: 1 / 2
        ([[0, 0, 10, 10]], [[0, 0, 10, 10], [20, 20, 30, 30]], 0.5),
        # nothing predicted, or nothing to find
        ([], [[0, 0, 10, 10]], 0.0),
        ([[0, 0, 10, 10]], [], 0.0),
    ])
    def test_cases(self, pred, gt, expected):
        assert matched_iou(pred, gt) == pytest.approx(expected)

    def test_optimal_not_greedy(self):
        # greedy pairs P1 with A (its best, 0.905) and leaves P2 with B (0.43); the optimal
        # matching gives up a little on P1 to pair P2 with A
        pred, gt = [P1, P2], [A, B]
        expected = (box_iou(P1, B) + box_iou(P2, A)) / 2
        assert matched_iou(pred, gt) == pytest.approx(expected)
        assert greedy_iou(pred, gt) < expected - 0.03

    def test_accepts_tuples_and_arrays(self):
        assert matched_iou(np.array([A, B]), ((2, 0, 12, 10), (0, 0, 10, 10))) == 1.0


boxes_st = st.builds(
    lambda x, y, w, h: [x, y, x + w, y + h],
    st.floats(0, 1e4), st.floats(0, 1e4), st.floats(1e-2, 1e4), st.floats(1e-2, 1e4))


@settings(max_examples=200, deadline=None)
@given(st.lists(boxes_st, max_size=8), st.lists(boxes_st, max_size=8))
def test_matched_iou_symmetric_and_bounded(a, b):
    assert 0.0 <= matched_iou(a, b) <= 1.0
    assert matched_iou(a, b) == pytest.approx(matched_iou(b, a), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(boxes_st, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_matched_iou_identical_is_one(a, rng):
    shuffled = list(a)
    rng.shuffle(shuffled)
    assert matched_iou(a, shuffled) == 1.0


SOLUTIONS_VALID = [
    # one box
    ([10, 20, 30, 40], [[10.0, 20.0, 30.0, 40.0]]),
    # a tuple, floats
    ((10.5, 20, 30, 40.25), [[10.5, 20.0, 30.0, 40.25]]),
    # a list of boxes
    ([[10, 20, 30, 40], [50, 60, 70, 80]], [[10.0, 20.0, 30.0, 40.0], [50.0, 60.0, 70.0, 80.0]]),
    # Qwen2.5-VL dict and a list of them
    ({'bbox_2d': [10, 20, 30, 40], 'label': 'cat'}, [[10.0, 20.0, 30.0, 40.0]]),
    ([{'bbox_2d': [10, 20, 30, 40]}, {'bbox_2d': [50, 60, 70, 80]}],
     [[10.0, 20.0, 30.0, 40.0], [50.0, 60.0, 70.0, 80.0]]),
    # JSON strings of each
    ('[10, 20, 30, 40]', [[10.0, 20.0, 30.0, 40.0]]),
    ('[[10, 20, 30, 40]]', [[10.0, 20.0, 30.0, 40.0]]),
    ('{"bbox_2d": [10, 20, 30, 40], "label": "a [b]"}', [[10.0, 20.0, 30.0, 40.0]]),
    ('[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]', [[10.0, 20.0, 30.0, 40.0]]),
    # a numpy array from a dataset column, numpy scalars
    (np.array([10, 20, 30, 40]), [[10.0, 20.0, 30.0, 40.0]]),
    ([np.float32(10), np.int64(20), 30, 40], [[10.0, 20.0, 30.0, 40.0]]),
    # zero is a valid coordinate
    ([0, 0, 1, 1], [[0.0, 0.0, 1.0, 1.0]]),
    # exactly MAX_GT_BOXES boxes
    ([[0, 0, 1, 1]] * MAX_GT_BOXES, [[0.0, 0.0, 1.0, 1.0]] * MAX_GT_BOXES),
]


@pytest.mark.parametrize('solution, expected', SOLUTIONS_VALID)
def test_parse_solution_valid(solution, expected):
    assert parse_solution(solution) == expected


SOLUTIONS_INVALID = [
    None,
    '',
    '[]',
    [],
    'cat',  # not JSON
    '[10, 20, 30',  # truncated JSON
    [10, 20, 30],  # wrong length
    [10, 20, 30, 40, 50],
    [[10, 20, 30, 40], [1, 2, 3]],  # one bad box spoils the solution
    ['10', 20, 30, 40],  # strings are not numbers
    [True, 0, 1, 1],  # bools are not numbers
    [float('nan'), 20, 30, 40],
    [10, 20, float('inf'), 40],
    '[NaN, 20, 30, 40]',  # json.loads accepts NaN: refused after
    '[10, 20, 1e999, 40]',  # overflows to inf
    '[1' + '0' * 5000 + ', 20, 30, 40]',  # an integer too long for int()
    [10 ** 400, 20, 30, 40],  # an integer too large for a float (issue 27)
    '[10, 20, 1' + '0' * 400 + ', 40]',  # ... as JSON text
    {'bbox_2d': [10, 20, 30, 10 ** 400]},
    [[10, 20, 30, 40], [1, 2, 3, -10 ** 400]],
    [-1, 20, 30, 40],  # negative
    [30, 20, 10, 40],  # inverted x: not reordered
    [10, 40, 30, 20],  # inverted y
    [10, 20, 10, 40],  # zero width
    {'label': 'cat'},  # no bbox_2d
    {'bbox_2d': [10, 20, 30]},
    [[0, 0, 1, 1]] * (MAX_GT_BOXES + 1),  # too many boxes
    '[' * 100_000 + ']' * 100_000,  # deep nesting: refused before json.loads
    '[[[[[[[[[[10, 20, 30, 40]]]]]]]]]]',
    '[10, 20, 30, 40]' + ' ' * (64 * 1024),  # longer than MAX_SOLUTION_CHARS
    42,
]


@pytest.mark.parametrize('solution', SOLUTIONS_INVALID,
                         ids=[repr(s)[:40] for s in SOLUTIONS_INVALID])
def test_parse_solution_invalid(solution):
    assert parse_solution(solution) is None


GT = [64, 48, 320, 240]  # original pixels of the 640 x 480 image
SCORE_CASES = [
    # Qwen2.5-VL, absolute pixels of the 644 x 476 frame: GT scaled by 644/640, 476/480
    ('abs', QWEN, '[{"bbox_2d": [64.4, 47.6, 322, 238], "label": "cat"}]', GT, 1.0),
    # ... the same numbers read as original pixels would be off by the resize
    ('abs', QWEN, '[{"bbox_2d": [64, 48, 320, 240]}]', GT, box_iou(QWEN.to_original(GT), GT)),
    # Qwen2.5-VL bare list in <answer> after a misleading <think>
    ('abs', QWEN, '<think>[0, 0, 10, 10]</think><answer>[64.4, 47.6, 322, 238]</answer>', GT, 1.0),
    # Qwen2-VL box tokens, 0-1000 of the frame
    ('norm1000', QWEN, '<|object_ref_start|>cat<|object_ref_end|>'
     '<|box_start|>(100,100),(500,500)<|box_end|>', GT, 1.0),
    # Qwen3-VL JSON, 0-1000
    ('norm1000', QWEN3, '```json\n[{"bbox_2d": [100, 100, 500, 500], "label": "cat"}]\n```',
     GT, 1.0),
    # InternVL, 0-1000 of the 1792 x 1344 tile canvas of an 800 x 600 image
    ('norm1000', INTERNVL, '<ref>cat</ref><box>[[100, 100, 500, 500]]</box>',
     [80, 60, 400, 300], 1.0),
    # InternVL, two objects in one tag, given in the other order
    ('norm1000', INTERNVL, '<ref>cats</ref><box>[[500, 500, 1000, 1000], [0, 0, 500, 500]]</box>',
     [[0, 0, 400, 300], [400, 300, 800, 600]], 1.0),
    # inverted corners in the prediction are reordered
    ('norm1000', QWEN3, '[500, 500, 100, 100]', GT, 1.0),
    # clipping: a box past every edge becomes the whole image
    ('abs', QWEN, '[-50, -50, 700, 500]', [0, 0, 640, 480], 1.0),
    ('norm1000', INTERNVL, '[-100, -100, 1100, 1100]', [0, 0, 800, 600], 1.0),
    # a box clipped to half of the image, against the whole image
    ('norm1000', QWEN3, '[-1000, 0, 500, 1000]', [0, 0, 640, 480], 0.5),
    # a box wholly outside the image is dropped: nothing left, 0.0
    ('abs', QWEN, '[700, 500, 800, 600]', GT, 0.0),
    # ... and does not count as an extra box when a good one is there
    ('norm1000', QWEN3, '[[100, 100, 500, 500], [1100, 1100, 1200, 1200]]', GT, 1.0),
    # an extra predicted box inside the image costs half
    ('norm1000', QWEN3, '[[100, 100, 500, 500], [600, 600, 900, 900]]', GT, 0.5),
    # zero-area box is dropped
    ('norm1000', QWEN3, '[100, 100, 100, 500]', GT, 0.0),
    # a huge but finite coordinate is clipped to the edge like any other
    ('norm1000', INTERNVL, '[0, 0, 1e308, 1e308]', [0, 0, 800, 600], 1.0),
    # one that overflows when scaled (1.5e308 * 1792 / 1000) is dropped, not clipped
    ('norm1000', INTERNVL, '[0, 0, 1.5e308, 1.5e308]', [0, 0, 800, 600], 0.0),
    # no box, unparseable box
    ('abs', QWEN, 'There is no cat.', GT, 0.0),
    ('abs', QWEN, '[١٢,٣٤,٥٦,٧٨]', GT, 0.0),
    # ground truth given as JSON text
    ('norm1000', QWEN3, '[100, 100, 500, 500]', '[{"bbox_2d": [64, 48, 320, 240]}]', 1.0),
    # invalid ground truth: no opinion
    ('abs', QWEN, '[64.4, 47.6, 322, 238]', None, None),
    ('abs', QWEN, '[64.4, 47.6, 322, 238]', [320, 48, 64, 240], None),
    ('abs', QWEN, '[64.4, 47.6, 322, 238]', 'no box', None),
]


@pytest.mark.parametrize('coords, geometry, completion, solution, expected', SCORE_CASES)
def test_iou_score(coords, geometry, completion, solution, expected):
    score = iou_score(completion, solution, geometry, coords)
    if expected is None:
        assert score is None
    else:
        assert score == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize('coords', ['pixels', 'ABS', '', None])
def test_iou_score_bad_coords(coords):
    with pytest.raises(ValueError, match=r"`coords` should be one of \['abs', 'norm1000', 'norm1', 'norm999', "
                                         r"'bins1000', 'bins1024'\], got"):
        iou_score('[1, 2, 3, 4]', GT, QWEN, coords)


def assert_valid(score):
    assert score is None or (isinstance(score, float) and 0.0 <= score <= 1.0), score


@settings(max_examples=300, deadline=None)
@given(st.text(), st.sampled_from(GEOMETRIES), st.sampled_from(['abs', 'norm1000']))
def test_iou_score_never_raises_on_text(text, geometry, coords):
    assert_valid(iou_score(text, GT, geometry, coords))


number_text = st.one_of(
    st.integers(-2000, 3000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(['1e308', '-1e308', '1e309', 'NaN', 'inf', '١٢', '', '.', '-', '1e', '+.5']),
)
fragment = st.one_of(
    number_text,
    st.sampled_from(['[', ']', ',', ', ', '(', ')', '{"bbox_2d": ', '}', '"label": "a"', '<box>',
                     '</box>', '<ref>a</ref>', '<|box_start|>', '<|box_end|>', '<answer>',
                     '</answer>', '<think>', '</think>', '```json\n', '\n```']),
    st.text(max_size=3),
)
near_box = st.lists(number_text, min_size=3, max_size=5).map(lambda ns: '[' + ', '.join(ns) + ']')
near_valid = st.lists(st.one_of(fragment, near_box), max_size=40).map(''.join)


@settings(max_examples=300, deadline=None)
@given(near_valid, st.sampled_from(GEOMETRIES), st.sampled_from(['abs', 'norm1000']),
       st.one_of(st.just(GT), st.lists(boxes_st, min_size=1, max_size=3)))
def test_iou_score_never_raises_on_near_valid_boxes(text, geometry, coords, solution):
    assert_valid(iou_score(text, solution, geometry, coords))
    for box in parse_boxes(text):
        assert len(box) == 4 and all(math.isfinite(v) for v in box)
        assert box[0] <= box[2] and box[1] <= box[3]


HOSTILE = {
    'truncated JSON': '[{"bbox_2d": [10, 20, 30',
    'truncated fence': '```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "c',
    'NaN and inf': '[NaN, 1, 2, 3] [1, inf, 2, 3] {"bbox_2d": [Infinity, 0, 1, 1]}',
    '1e308': '[1e308, 1e308, -1e308, -1e308] [0, 0, 1e308, 1e308]',
    'negative and swapped': '[-50, 400, -900, -20] <|box_start|>(900,900),(-5,-5)<|box_end|>',
    '10,000 boxes': '[' + ', '.join(['[64.4, 47.6, 322, 238]'] * 10_000) + ']',
    '10,000 JSON boxes': '[' + ', '.join(['{"bbox_2d": [64, 47, 322, 238], "label": "c"}'] * 10_000)
                         + ']',
    '100k-deep nesting': '[' * 100_000 + '1, 2, 3, 4' + ']' * 100_000,
    '100k-deep dicts': '{"bbox_2d": ' * 100_000 + '[1, 2, 3, 4]' + '}' * 100_000,
    '1 MB of text': 'lorem ipsum [1, 2, 3] ' * 50_000,
    '1 MB of digits': '[' + '9' * 1_000_000,
    '1 MB of brackets': '[' * 1_000_000,
    '1 MB of unclosed tags': '<box>[[1, 2, 3, 4]' * 60_000,
    '1 MB of answer tags': '<answer>' * 130_000,
    '1 MB of number lists missing the last': '[1, 2, 3, ' * 100_000,
    'very long number': '[1' + '0' * 60_000 + ', 2, 3, 4]',
    'unicode digits': '[١٢,٣٤,٥٦,٧٨]',
    'full-width digits': '[１２,３４,５６,７８]',
    'lone surrogate': '[1, 2, 3, 4]\ud800',
    'NUL bytes': '\x00[1,\x002, 3, 4]\x00',
}


@pytest.mark.parametrize('name', list(HOSTILE))
def test_hostile_completions(name):
    text = HOSTILE[name]
    for geometry, coords in [(QWEN, 'abs'), (INTERNVL, 'norm1000')]:
        start = time.perf_counter()
        score = iou_score(text, GT, geometry, coords)
        style = box_style(text)
        well_formed = is_well_formed(text, ('qwen2_5_json', 'bare_list'))
        found = parse_boxes(text)
        elapsed = time.perf_counter() - start
        assert elapsed < 0.5, f'{name}: {elapsed:.3f} s'
        assert_valid(score)
        assert style is None or isinstance(style, str)
        assert isinstance(well_formed, bool)
        assert len(found) <= scoring.MAX_GT_BOXES


def test_doctests():
    result = doctest.testmod(scoring)
    assert result.attempted > 0 and result.failed == 0


@settings(max_examples=100, deadline=None)
@given(boxes_st, st.lists(boxes_st, min_size=2, max_size=6))
def test_one_prediction_matches_its_best_box(pred, gt):
    # the vectorized matrix behind the multi-box path computes exactly what box_iou does
    assert matched_iou([pred], gt) == max(box_iou(pred, g) for g in gt) / len(gt)
    assert matched_iou(gt, [pred]) == matched_iou([pred], gt)


# --- the single-box fast path --------------------------------------------------------------------
# iou_score answers one box against one box without parsing JSON or matching; everything else
# goes the general way. Both must give the same float for every input: the fast path is an
# optimisation, never a second definition of the score.
def general(completion, solution, geometry, coords):
    return scoring._general_score(completion, solution, geometry, coords)


def test_fast_path_copies_the_boxes_pattern():
    # the qwen2_5_json pattern is copied from swift_ext.boxes (private there): pinned equal
    from swift_ext import boxes
    assert scoring._BBOX_2D_RE.pattern == boxes._BBOX_2D_RE.pattern


FAST_CASES = {
    # (completion, solution, takes the fast path)
    'json answer, JSON string gt': ('[{"bbox_2d": [64, 48, 322, 238], "label": "cat"}]', '[64, 48, 320, 240]', True),
    'answer tag and fence': ('<think>[1, 2, 3, 4]</think><answer>```json\n[{"bbox_2d": [10, 20, 300, 400]}]\n```'
                             '</answer>', '[12, 22, 290, 410]', True),
    'list gt': ('{"bbox_2d": [64.4, 47.6, 322, 238]}', [64, 48, 320, 240], True),
    'float list gt': ('{"bbox_2d": [64.4, 47.6, 322, 238]}', [64.0, 48.5, 320.25, 240.0], True),
    'inverted prediction': ('{"bbox_2d": [322, 238, 64, 48]}', '[64, 48, 320, 240]', True),
    'prediction outside the image': ('{"bbox_2d": [900, 900, 990, 990]}', '[64, 48, 320, 240]', True),
    'prediction clipped': ('{"bbox_2d": [-50, -50, 100, 100]}', '[0, 0, 90, 90]', True),
    'zero-area prediction': ('{"bbox_2d": [10, 10, 10, 50]}', '[0, 0, 90, 90]', True),
    'disjoint': ('{"bbox_2d": [0, 0, 10, 10]}', '[100, 100, 200, 200]', True),
    'exponent and sign': ('{"bbox_2d": [+1e1, 2E1, 3.5e2, .4e3]}', '[1e1, 20, 3.5E2, 4e2]', True),
    'single quotes key': ("{'bbox_2d': [1, 2, 300, 400]}", '[1, 2, 300, 400]', True),
    'gt with JSON whitespace': ('{"bbox_2d": [1, 2, 300, 400]}', ' [ 1 ,\n2,\t300 , 400 ]\r\n', True),
    'huge but finite prediction': ('{"bbox_2d": [1e300, 1e300, 1e301, 1e301]}', '[1, 2, 300, 400]', True),
    'prediction overflowing a float': ('{"bbox_2d": [1e400, 2, 3, 4]}', '[1, 2, 300, 400]', False),
    'two boxes': ('[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [5, 6, 7, 8]}]', '[1, 2, 3, 4]', False),
    'two gt boxes': ('{"bbox_2d": [1, 2, 3, 4]}', '[[1, 2, 3, 4], [5, 6, 7, 8]]', False),
    'gt as bbox_2d dict': ('{"bbox_2d": [1, 2, 3, 4]}', '{"bbox_2d": [1, 2, 3, 4]}', False),
    'box tokens win over json': ('<|box_start|>(1,2),(3,4)<|box_end|>{"bbox_2d": [5, 6, 7, 8]}', '[1, 2, 3, 4]', False),
    'internvl tag wins over json': ('<box>[[1, 2, 3, 4]]</box>{"bbox_2d": [5, 6, 7, 8]}', '[1, 2, 3, 4]', False),
    'bare list': ('[10, 20, 300, 400]', '[10, 20, 300, 400]', False),
    'bbox_2d without a box': ('{"bbox_2d": [1, 2, 3]} [10, 20, 300, 400]', '[10, 20, 300, 400]', False),
    'gt plus sign (not JSON)': ('{"bbox_2d": [1, 2, 3, 4]}', '[+1, 2, 3, 4]', False),
    'gt leading zero (not JSON)': ('{"bbox_2d": [1, 2, 3, 4]}', '[01, 2, 3, 4]', False),
    'gt NaN': ('{"bbox_2d": [1, 2, 3, 4]}', '[NaN, 2, 3, 4]', False),
    'gt inverted': ('{"bbox_2d": [1, 2, 3, 4]}', '[3, 2, 1, 4]', False),
    'gt negative': ('{"bbox_2d": [1, 2, 3, 4]}', '[-1, 2, 3, 4]', False),
    'gt infinite': ('{"bbox_2d": [1, 2, 3, 4]}', '[1, 2, 1e400, 4]', False),
    'gt bools': ('{"bbox_2d": [1, 2, 3, 4]}', [False, False, True, True], False),
    'gt numpy array': ('{"bbox_2d": [1, 2, 3, 4]}', np.array([1, 2, 3, 4]), False),
    'gt tuple': ('{"bbox_2d": [1, 2, 3, 4]}', (1, 2, 3, 4), False),
    'gt huge integer': ('{"bbox_2d": [1, 2, 3, 4]}', '[1, 2, ' + '9' * 5000 + ', 4]', False),
    'no box': ('I cannot see it.', '[1, 2, 3, 4]', False),
    'not a string': (None, '[1, 2, 3, 4]', False),
}


@pytest.mark.parametrize('name', sorted(FAST_CASES))
@pytest.mark.parametrize('geometry', GEOMETRIES, ids=['qwen', 'qwen3', 'internvl'])
@pytest.mark.parametrize('coords', ['abs', 'norm1000'])
def test_fast_path_equals_general_path(name, geometry, coords):
    completion, solution, fast = FAST_CASES[name]
    taken = scoring._single_box_score(completion, solution, geometry, coords) is not scoring._NOT_FAST
    assert taken is fast  # the common single-box case really is fast; the rest really is not
    if completion is None:  # the general path refuses a non-str completion
        with pytest.raises(TypeError):
            iou_score(completion, solution, geometry, coords)
        return
    expected = general(completion, solution, geometry, coords)
    assert iou_score(completion, solution, geometry, coords) == expected


_coord = st.one_of(st.integers(-100, 3000), st.floats(-100, 3000, allow_nan=False, allow_infinity=False))


@settings(max_examples=300, deadline=None)
@given(pred=st.lists(_coord, min_size=4, max_size=4), gt=st.lists(_coord, min_size=4, max_size=4),
       as_text=st.booleans(), wrap=st.sampled_from(['{}', '<answer>{}</answer>', '<think>x</think>{}']),
       geometry=st.sampled_from(GEOMETRIES), coords=st.sampled_from(COORDS))
def test_fast_path_equals_general_path_random(pred, gt, as_text, wrap, geometry, coords):
    completion = wrap.format('[{{"bbox_2d": [{}], "label": "x"}}]'.format(', '.join(repr(v) for v in pred)))
    solution = '[{}]'.format(', '.join(repr(v) for v in gt)) if as_text else gt
    assert iou_score(completion, solution, geometry, coords) == general(completion, solution, geometry, coords)
