"""Boxes in model completions: find ``[x1, y1, x2, y2]`` in every VLM output style.

Pure text processing: no torch, no swift, no json. Every style is read by regexes over
*flat* lists of exactly four numbers, so nesting depth never matters (``[[[[...]]]]``
100,000 levels deep is just text) and no pattern can backtrack catastrophically: each
pattern's variable parts are separated by literal delimiters, so every attempt ends at
the next delimiter and a scan is linear in the text scanned.

Styles, in the order they are tried (the first that yields a box wins, so the numbers in
a Qwen2.5-VL ``"label"`` or an InternVL ``<ref>`` cannot leak in as a bare list):

* ``qwen2_box_tokens`` (Qwen2-VL): ``<|box_start|>(10,20),(30,40)<|box_end|>``
* ``internvl_box`` (InternVL): ``<ref>cat</ref><box>[[10, 20, 30, 40]]</box>``
* ``qwen2_5_json`` (Qwen2.5-VL, Qwen3-VL): ``[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}]``
* ``glm_box`` (GLM-4.1V / 4.5V): ``<|begin_of_box|>[10, 20, 30, 40]<|end_of_box|>``
* ``deepseek_det`` (DeepSeek-VL2, DeepSeek-OCR): ``<|ref|>cat<|/ref|><|det|>[[10, 20, 30, 40]]<|/det|>``
* ``florence_loc`` (Florence-2): ``car<loc_10><loc_20><loc_30><loc_40>``, x before y, as
  transformers' Florence2PostProcessor reads them (four adjacent tokens, bins 0-999)
* ``paligemma_loc`` (PaliGemma): ``<loc0020><loc0010><loc0040><loc0030> car``, four-digit bins
  0-1023, **y before x** (big_vision's detection format); returned reordered as x1, y1, x2, y2
* ``bare_list`` (any): ``[10, 20, 30, 40]`` or ``[[...], [...]]``
* ``hunyuan_spot`` (HunyuanOCR text spotting): ``Total(10,20),(30,40)Paid(50,60),(70,80)``, each box a
  ``(x1,y1),(x2,y2)`` pair of integers right after its text, as Tencent's ``process_spotting_response``
  reads them; a pair with no text before it (only spaces, commas or parentheses since the previous
  pair) is not a box, nor one right after ``<|box_start|>`` (Qwen2-VL's markup). Last, so that no
  text an earlier style reads changes.

Where boxes are read from:

* if the completion has ``<answer>``, only the text after the last ``<answer>`` up to the
  next ``</answer>`` (or the end, for a completion cut short) - reasoning in ``<think>``
  is full of numbers;
* else, if it has ``</think>``, only the text after the last ``</think>``;
* else the whole completion.

Bounds (part of the contract):

* ``MAX_SCAN_CHARS``: only the first 64 KiB of that region is scanned. A completion is
  at most a few thousand tokens (~4 characters each), so a real answer fits many times
  over; anything longer is a runaway generation, and the boxes of a detection answer come
  first. Locating the region uses ``str.rfind``/``str.find`` over the whole text, which
  is linear and runs at memory speed (a 1 MB completion takes well under 1 ms).
* ``MAX_BOXES``: at most 100 boxes are returned (the first 100 in the text), the same
  cap as ``scoring.MAX_GT_BOXES`` for ground truth, so the assignment problem in
  ``scoring.matched_iou`` is at most 100 x 100 (about 1 ms).

Numbers: ASCII digits only (``[0-9]``, not ``\\d``, which would accept Arabic-Indic or
full-width digits), optional sign, decimals and exponent. ``NaN``/``inf`` never match;
a literal that overflows a float (``1e309``, 400 digits) gives ``inf`` and its box is
dropped. Coordinates that are finite here may still overflow after scaling (``1e308``);
``scoring.iou_score`` drops those too. Inverted corners (``x1 > x2`` or ``y1 > y2``) are
reordered; negative and zero-area boxes are returned as written (scoring clips them).
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence

MAX_BOXES = 100
MAX_SCAN_CHARS = 64 * 1024

STYLES = ('qwen2_box_tokens', 'internvl_box', 'qwen2_5_json', 'glm_box', 'deepseek_det', 'florence_loc',
          'paligemma_loc', 'bare_list', 'hunyuan_spot')

_NUM = r'([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)'
_SEP = r'\s*,\s*'
# A flat list of exactly four numbers: `[1, 2, 3]` and `[1, 2, 3, 4, 5]` do not match.
_FLAT_LIST = r'\[\s*' + _SEP.join([_NUM] * 4) + r'\s*\]'
_FLAT_LIST_RE = re.compile(_FLAT_LIST)
_BBOX_2D_RE = re.compile(r'["\']bbox_2d["\']\s*:\s*' + _FLAT_LIST)
_BOX_TOKENS_RE = re.compile(
    r'<\|box_start\|>\s*\(\s*' + _NUM + _SEP + _NUM + r'\s*\)' + _SEP
    + r'\(\s*' + _NUM + _SEP + _NUM + r'\s*\)\s*<\|box_end\|>')
# `[^<]*` instead of `.*?`: an unclosed `<box>` stops at the next `<`, so many unclosed
# tags cost one pass over the text, not one pass each.
_INTERNVL_BOX_RE = re.compile(r'<box>([^<]*)</box>')
# GLM-4.xV wraps its answer's box list in box tokens; `[^<]*` as for InternVL.
_GLM_BOX_RE = re.compile(r'<\|begin_of_box\|>([^<]*)<\|end_of_box\|>')
# DeepSeek-VL2 / DeepSeek-OCR: a list of boxes inside det tags (serve/app_modules/utils.py parse_ref_bbox).
_DEEPSEEK_DET_RE = re.compile(r'<\|det\|>([^<]*)<\|/det\|>')
_TAGGED = {'internvl_box': _INTERNVL_BOX_RE, 'glm_box': _GLM_BOX_RE, 'deepseek_det': _DEEPSEEK_DET_RE}
# Location tokens: four adjacent ones make a box (Florence-2 `<loc_N>`, PaliGemma `<locNNNN>`).
_FLORENCE_LOC_RE = re.compile(''.join([r'<loc_([0-9]+)>'] * 4))
_PALIGEMMA_LOC_RE = re.compile(''.join([r'<loc([0-9]{4})>'] * 4))
# HunyuanOCR spotting: `text(x1,y1),(x2,y2)`, integers, no spaces. The pair is found first and its text
# checked after (a character other than space, comma or parenthesis since the previous pair), so a
# long text without a pair costs one pass, not one per start position.
_HUNYUAN_PAIR_RE = re.compile(r'\(([0-9]+),([0-9]+)\),\(([0-9]+),([0-9]+)\)')
_SPOT_TEXT_RE = re.compile(r'[^\s(),]')
# A pair right after `<|box_start|>` is Qwen2-VL's markup (malformed, or that style would have read it).
_BOX_START_BEFORE_RE = re.compile(r'<\|box_start\|>\s*$')


def answer_region(text: str) -> str:
    """The part of a completion that holds its answer (see the module docstring)."""
    start = text.rfind('<answer>')
    if start >= 0:
        start += len('<answer>')
        end = text.find('</answer>', start)
        return text[start:end if end >= 0 else len(text)]
    think_end = text.rfind('</think>')
    if think_end >= 0:
        return text[think_end + len('</think>'):]
    return text


def _to_box(numbers: tuple[str, ...]) -> list[float] | None:
    """Four number literals to an ordered box, or None if any is not finite."""
    x1, y1, x2, y2 = (float(n) for n in numbers)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]


def _collect(matches, max_boxes: int, into: list[list[float]]) -> None:
    for match in matches:
        if len(into) >= max_boxes:
            return
        box = _to_box(match.groups())
        if box is not None:
            into.append(box)


class _yx:
    """A y-first match's groups in x-first order (what ``_collect`` reads)."""

    __slots__ = ('match',)

    def __init__(self, match):
        self.match = match

    def groups(self) -> tuple[str, ...]:
        y1, x1, y2, x2 = self.match.groups()
        return x1, y1, x2, y2


def _spotted(region: str):
    """The ``(x1,y1),(x2,y2)`` pairs of a HunyuanOCR spotting answer that have text before them."""
    last = 0
    for match in _HUNYUAN_PAIR_RE.finditer(region):
        start = match.start()
        if _SPOT_TEXT_RE.search(region, last, start) is not None \
                and _BOX_START_BEFORE_RE.search(region, last, start) is None:
            yield match
        last = match.end()


def _boxes_in_style(region: str, style: str, max_boxes: int) -> list[list[float]]:
    boxes: list[list[float]] = []
    if style == 'qwen2_box_tokens':
        _collect(_BOX_TOKENS_RE.finditer(region), max_boxes, boxes)
    elif style in _TAGGED:
        for tag in _TAGGED[style].finditer(region):
            if len(boxes) >= max_boxes:
                break
            _collect(_FLAT_LIST_RE.finditer(tag.group(1)), max_boxes, boxes)
    elif style == 'qwen2_5_json':
        _collect(_BBOX_2D_RE.finditer(region), max_boxes, boxes)
    elif style == 'florence_loc':
        _collect(_FLORENCE_LOC_RE.finditer(region), max_boxes, boxes)
    elif style == 'paligemma_loc':  # y1 x1 y2 x2 as written: read as x1 y1 x2 y2
        _collect((_yx(m) for m in _PALIGEMMA_LOC_RE.finditer(region)), max_boxes, boxes)
    elif style == 'hunyuan_spot':
        _collect(_spotted(region), max_boxes, boxes)
    else:
        _collect(_FLAT_LIST_RE.finditer(region), max_boxes, boxes)
    return boxes


def _scan(text: str, max_boxes: int) -> tuple[str | None, list[list[float]]]:
    if not isinstance(text, str):
        raise TypeError(f'`text` should be a str, got {type(text).__name__}.')
    if isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1:
        raise ValueError(f'`max_boxes` should be a positive integer, got {max_boxes!r}.')
    region = answer_region(text)[:MAX_SCAN_CHARS]
    for style in STYLES:
        boxes = _boxes_in_style(region, style, max_boxes)
        if boxes:
            return style, boxes
    return None, []


def parse_boxes(text: str, *, max_boxes: int = MAX_BOXES) -> list[list[float]]:
    """Predicted ``[x1, y1, x2, y2]`` boxes in a completion, in the model's own coordinates.

    Args:
        text: the completion, in any style of the module docstring.
        max_boxes: keep at most this many boxes (the first ones in the text).

    Returns:
        Boxes with ``x1 <= x2`` and ``y1 <= y2``; ``[]`` when none is found. Never raises
        for a ``str``.

    Example:
        >>> parse_boxes('<think>[1, 2, 3, 4]?</think><answer>```json\\n'
        ...             '[{"bbox_2d": [50, 60, 10, 20], "label": "cat"}]\\n```</answer>')
        [[10.0, 20.0, 50.0, 60.0]]
        >>> parse_boxes('<ref>dog</ref><box>[[1, 2, 3, 4], [5, 6, 7, 8]]</box>')
        [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]
        >>> parse_boxes('The cat is at <|begin_of_box|>[120,80,560,710]<|end_of_box|>.')
        [[120.0, 80.0, 560.0, 710.0]]
        >>> parse_boxes('<loc0080><loc0120><loc0710><loc0560> cat')  # PaliGemma: y first
        [[120.0, 80.0, 560.0, 710.0]]
        >>> parse_boxes('INVOICE(112,40),(388,72)Total (USD)(96,880),(402,910)')  # HunyuanOCR spotting
        [[112.0, 40.0, 388.0, 72.0], [96.0, 880.0, 402.0, 910.0]]
    """
    return _scan(text, max_boxes)[1]


def box_style(text: str) -> str | None:
    """Which style the completion's boxes are written in (one of ``STYLES``), or None.

    Example:
        >>> box_style('<|object_ref_start|>cat<|object_ref_end|>'
        ...           '<|box_start|>(10,20),(30,40)<|box_end|>')
        'qwen2_box_tokens'
        >>> box_style('no box here') is None
        True
    """
    return _scan(text, MAX_BOXES)[0]


def is_well_formed(text: str, styles: Sequence[str]) -> bool:
    """True when the completion holds at least one box in one of ``styles``.

    Args:
        text: the completion.
        styles: the output styles the model writes (names from ``STYLES``); each `_geo`
            template's settings carry its family's as ``settings.box_styles``.

    Returns:
        Whether a box of four finite numbers was found, in the answer region, in one of
        ``styles``. Syntax only: ``[0, 0, 0, 0]`` is well formed (it scores 0 IoU).

    Example:
        >>> is_well_formed('[{"bbox_2d": [1, 2, 3, 4]}]', ('qwen2_5_json', 'bare_list'))
        True
        >>> is_well_formed('[{"bbox_2d": [1, 2, 3, 4]}]', ('internvl_box',))
        False
    """
    if isinstance(styles, str) or not styles or any(style not in STYLES for style in styles):
        raise ValueError(f'`styles` should be a non-empty list of names from {list(STYLES)}, got {styles!r}.')
    return box_style(text) in styles
