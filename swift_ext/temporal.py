"""Temporal grounding: intervals a model writes, and temporal IoU against the ground truth, in seconds.

The reward contract of ``swift_ext.scoring``: a score is a float in ``[0, 1]``, or ``None`` for "no
opinion on this sample" (ground truth missing, invalid, or outside the clip the model saw). No
completion can make scoring raise; the worst it gets is ``0.0``.

Answer forms read (inside ``<answer>...</answer>`` when there is one, else after ``</think>``):

* brackets: ``[12.3, 25.0]``, ``(12.3 - 25.0)``, a list ``[[1, 2], [5, 7]]``;
* prose: ``12.3 to 25.0``, ``12.3 - 25.0``, ``12.3s-25s``, ``from 12.3 seconds until 25``,
  ``between 12.3 and 25.0``;
* Qwen3-VL's own time text: ``<12.3 seconds> to <25.0 seconds>``, or two such tags in a row;
* clock times: ``01:05 - 01:30``, ``1:02:03.5 to 1:02:09``.

Times are seconds of the source video. Several intervals are scored as sets on the time line:
``|P ∩ G| / |P ∪ G|`` over the union of each side's intervals, so order and splitting don't matter.
"""
from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

from .boxes import MAX_SCAN_CHARS, answer_region

MAX_INTERVALS = 100
MAX_SOLUTION_CHARS = 64 * 1024
_MAX_SOLUTION_DEPTH = 4

# One time: a clock time (h:mm:ss or m:ss, fractions allowed) or a number, with an optional unit,
# optionally inside Qwen3-VL's angle brackets. Bounded repetitions only: no catastrophic backtracking.
_CLOCK = r'(?:\d{1,6}:)?\d{1,6}:\d{2}(?:\.\d{1,9})?'
_NUMBER = r'\d{1,12}(?:\.\d{1,12})?|\.\d{1,12}'
_UNIT = r'(?:\s{0,3}(?:seconds?|secs?|s)\b)?'
_TIME = rf'<?\s{{0,3}}({_CLOCK}|{_NUMBER}){_UNIT}\s{{0,3}}>?'
_SEP = r'\s{0,8}(?:-|–|—|~|to|until|till|through)\s{0,8}'
_BRACKET_SEP = r'\s{0,8}(?:,|-|–|~|to)\s{0,8}'
_INTERVAL = re.compile(
    rf'[\[(]\s{{0,8}}(?P<bs>[-+]?(?:{_CLOCK}|{_NUMBER})){_UNIT}{_BRACKET_SEP}'
    rf'(?P<be>[-+]?(?:{_CLOCK}|{_NUMBER})){_UNIT}\s{{0,8}}[\])]'
    rf'|between\s{{1,8}}{_TIME.replace("(", "(?P<ws>", 1)}\s{{1,8}}and\s{{1,8}}{_TIME.replace("(", "(?P<we>", 1)}'
    rf'|<\s{{0,3}}(?P<ts>{_CLOCK}|{_NUMBER})\s{{0,3}}seconds?\s{{0,3}}>(?:{_SEP}|\s{{0,8}}(?:,|and)?\s{{0,8}})'
    rf'<\s{{0,3}}(?P<te>{_CLOCK}|{_NUMBER})\s{{0,3}}seconds?\s{{0,3}}>'
    rf'|(?<![\w.:])(?P<ps>{_CLOCK}|{_NUMBER}){_UNIT}{_SEP}(?P<pe>{_CLOCK}|{_NUMBER}){_UNIT}(?![\w:]|\.\d)',
    re.IGNORECASE)


def parse_time(text: str) -> float | None:
    """Seconds in a time literal: ``'12.5'``, ``'1:05'`` (65), ``'01:02:03.5'`` (3723.5); None if not finite.

    Example:
        >>> parse_time('1:05'), parse_time('01:02:03.5'), parse_time('-2')
        (65.0, 3723.5, -2.0)
    """
    sign = -1.0 if text.startswith('-') else 1.0
    parts = text.lstrip('+-').split(':')
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    if len(parts) > 1 and any(v >= 60 for v in values[1:]):
        return None  # 1:75 is not a clock time
    seconds = 0.0
    for value in values:
        seconds = seconds * 60 + value
    seconds *= sign
    return seconds if math.isfinite(seconds) else None


def parse_intervals(completion: Any, max_intervals: int = MAX_INTERVALS) -> list[list[float]]:
    """The ``[start, end]`` intervals (seconds) a completion states, in order; ``[]`` when none.

    Predictions are read leniently: reversed bounds are swapped, an interval of zero length is
    kept (it scores 0 unless the tolerance rescues it). Never raises.

    Example:
        >>> parse_intervals('<think>maybe 3 to 4</think><answer>12.3 - 25.0</answer>')
        [[12.3, 25.0]]
        >>> parse_intervals('from <1.3 seconds> to <2.5 seconds>, and again [00:10, 00:12.5]')
        [[1.3, 2.5], [10.0, 12.5]]
    """
    if not isinstance(completion, str):
        return []
    region = answer_region(completion)[:MAX_SCAN_CHARS]
    out: list[list[float]] = []
    for match in _INTERVAL.finditer(region):
        groups = match.groupdict()
        for a, b in (('bs', 'be'), ('ws', 'we'), ('ts', 'te'), ('ps', 'pe')):
            if groups[a] is not None:
                start, end = parse_time(groups[a]), parse_time(groups[b])
                break
        if start is None or end is None:
            continue
        out.append([min(start, end), max(start, end)])
        if len(out) >= max_intervals:
            break
    return out


def _gt_interval(item: Any) -> list[float] | None:
    if isinstance(item, dict):
        item = [item.get('start'), item.get('end')]
    if not isinstance(item, (list, tuple)) or len(item) != 2:
        return None
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in item):
        return None
    start, end = float(item[0]), float(item[1])
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        return None  # reversed or empty: a dataset bug shown as "no score", not silently fixed
    return [start, end]


def parse_solution_intervals(solution: Any) -> list[list[float]] | None:
    """Ground-truth intervals in seconds, or None when unusable.

    Accepted: ``[start, end]``; a list of them; ``{"start": s, "end": e}`` or a list of such; a
    JSON string of any of these. Each must hold finite numbers with ``0 <= start < end``.

    Example:
        >>> parse_solution_intervals('[[1, 2.5], [4, 6]]')
        [[1.0, 2.5], [4.0, 6.0]]
        >>> parse_solution_intervals([5, 3]) is None
        True
    """
    if isinstance(solution, str):
        if len(solution) > MAX_SOLUTION_CHARS or solution.count('[') + solution.count('{') > 4 * MAX_INTERVALS \
                or _depth(solution) > _MAX_SOLUTION_DEPTH:
            return None
        try:
            solution = json.loads(solution)
        except ValueError:
            return None
    if hasattr(solution, 'tolist') and not isinstance(solution, (list, tuple)):
        solution = solution.tolist()
    if isinstance(solution, dict):
        solution = [solution]
    if not isinstance(solution, (list, tuple)) or not solution:
        return None
    if len(solution) == 2 and all(isinstance(v, numbers.Real) for v in solution):
        solution = [solution]
    if len(solution) > MAX_INTERVALS:
        return None
    intervals = [_gt_interval(item) for item in solution]
    if any(i is None for i in intervals):
        return None
    return intervals


def _depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in '[{':
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ']}':
            depth -= 1
    return deepest


def _union(intervals: Sequence[Sequence[float]]) -> list[list[float]]:
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _length(intervals: Sequence[Sequence[float]]) -> float:
    return math.fsum(end - start for start, end in intervals)


def _intersection(a: list[list[float]], b: list[list[float]]) -> float:
    i = j = 0
    total = []
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total.append(hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return math.fsum(total)


def temporal_iou(pred: Sequence[Sequence[float]], gt: Sequence[Sequence[float]]) -> float:
    """``|P ∩ G| / |P ∪ G|`` of two sets of intervals on the time line; 0.0 when either is empty.

    Example:
        >>> temporal_iou([[0, 10]], [[5, 15]])
        0.3333333333333333
        >>> temporal_iou([[0, 2], [4, 6]], [[0, 6]])
        0.6666666666666666
    """
    p, g = _union(pred), _union(gt)
    if not p or not g:
        return 0.0
    inter = _intersection(p, g)
    union = _length(p) + _length(g) - inter
    if not union > 0:
        return 0.0
    return min(1.0, max(0.0, inter / union))


def _clip(intervals: Sequence[Sequence[float]], window: tuple[float, float] | None) -> list[list[float]]:
    if window is None:
        return [list(i) for i in intervals]
    lo, hi = window
    out = []
    for start, end in intervals:
        start, end = min(max(start, lo), hi), min(max(end, lo), hi)
        if end > start:
            out.append([start, end])
    return out


def tiou_score(completion: Any, solution: Any, *, window: tuple[float, float] | None = None,
               offset: float = 0.0, tolerance: float = 0.0) -> float | None:
    """Temporal IoU of a completion's intervals against the ground truth, in seconds of the source video.

    Args:
        completion: the model's output text.
        solution: ground truth (see :func:`parse_solution_intervals`).
        window: the clip the model saw, ``(video_start, video_end)`` seconds (``VideoGeometry``);
            both sides are clipped to it. Ground truth wholly outside it gives None.
        offset: seconds added to every predicted time, for a model that counts from the clip's
            start (``VideoGeometry.timestamp_origin`` under ms-swift's vLLM mode).
        tolerance: with one predicted and one true interval, a bound within ``tolerance`` seconds
            of the true one counts as exact (use ``VideoGeometry.sampling_step``: the model cannot
            place a bound finer than one frame pair).

    Returns:
        A float in ``[0, 1]`` (``0.0`` when no interval was written), or None.

    Example:
        >>> tiou_score('<answer>12.3 - 25.0</answer>', [12.3, 25.0])
        1.0
        >>> tiou_score('[10, 20]', '[15, 25]')
        0.3333333333333333
        >>> round(tiou_score('[11.5, 20]', [12, 20], tolerance=1.0), 6)
        1.0
    """
    try:
        return _tiou(completion, solution, window, offset, tolerance)
    except (ArithmeticError, LookupError, TypeError, ValueError):  # a hostile window / offset: no opinion
        return None


def _tiou(completion: Any, solution: Any, window, offset: float, tolerance: float) -> float | None:
    gt = parse_solution_intervals(solution)
    if gt is None:
        return None
    if window is not None:
        window = (float(window[0]), float(window[1]))
        if not (math.isfinite(window[0]) and math.isfinite(window[1]) and window[0] < window[1]):
            return None
    gt = _clip(gt, window)
    if not gt:
        return None
    offset, tolerance = float(offset), float(tolerance)
    if not (math.isfinite(offset) and math.isfinite(tolerance)):
        return None
    pred = [[s + offset, e + offset] for s, e in parse_intervals(completion)]
    pred = [p for p in pred if math.isfinite(p[0]) and math.isfinite(p[1])]
    if tolerance > 0 and len(pred) == 1 and len(gt) == 1:
        (ps, pe), (gs, ge) = pred[0], gt[0]
        pred = [[gs if abs(ps - gs) <= tolerance else ps, ge if abs(pe - ge) <= tolerance else pe]]
    pred = _clip(pred, window)
    return temporal_iou(pred, gt)
