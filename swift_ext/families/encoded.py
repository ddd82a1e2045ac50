"""Reading an encode's outputs: token runs, grids, shapes, as Python values (for the families' ``actual`` hooks).

Helpers only, no torch import: a tensor is read through ``.tolist()`` / ``.numpy()``. Internal module.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..geometry import ImageGeometry, updated


def token_runs(input_ids: Sequence[int], token_id: int, expected: Sequence[int] | None = None) -> list[int]:
    """Lengths of the contiguous runs of ``token_id`` in ``input_ids``, in order (see ``token_spans``)."""
    return [length for _, length in token_spans(input_ids, token_id, expected)]


def token_spans(input_ids: Sequence[int], token_id: int,
                expected: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """``(start, length)`` of each contiguous run of ``token_id`` in ``input_ids``, in order.

    ``expected`` is a hint, the run lengths the prediction gives: where the ids hold exactly
    those runs that is proved with list scans that run in C (``count``, ``index``), a few
    microseconds for thousands of image tokens; otherwise the runs are counted token by token.
    The result is the same either way.
    """
    ids = tolist(input_ids)
    if expected:
        spans = _proved_spans(ids, token_id, expected)
        if spans is not None:
            return spans
    spans, start = [], None
    for i, tok in enumerate(ids):
        if tok == token_id:
            if start is None:
                start = i
        elif start is not None:
            spans.append((start, i - start))
            start = None
    if start is not None:
        spans.append((start, len(ids) - start))
    return spans


def predicted_tokens(predicted: Sequence[ImageGeometry | None]) -> list[int] | None:
    """Every predicted image's token count (the ``expected`` hint of ``token_runs``); None if one is unknown."""
    if not predicted or any(geo is None for geo in predicted):
        return None
    return [geo.num_tokens for geo in predicted]


def _proved_spans(ids: list, token_id: int, expected: Sequence[int]) -> list[tuple[int, int]] | None:
    """The runs of ``token_id`` when they are exactly ``expected``, else None.

    Each run starts at the first ``token_id`` after the previous one and must end where its
    expected length says (last token ``token_id``, the next one not). No ``token_id`` lies
    outside these intervals (the first is found by ``index``, the gaps by ``index`` too, the tail
    is checked), so with ``count`` equal to the expected total every interval is whole.
    """
    if any(not isinstance(n, int) or n <= 0 for n in expected) or token_id not in ids:
        return None
    # The template builds a run as `[token] * n`, one object n times: comparing with that object
    # stops at identity, about 15x faster than comparing equal values.
    token_id = ids[ids.index(token_id)]
    if ids.count(token_id) != sum(expected):
        return None
    spans, pos, total = [], 0, len(ids)
    try:
        for length in expected:
            start = ids.index(token_id, pos)
            end = start + length
            if end > total or ids[end - 1] != token_id or (end < total and ids[end] == token_id):
                return None
            spans.append((start, length))
            pos = end
        ids.index(token_id, pos)
    except ValueError:
        return spans if len(spans) == len(expected) else None
    return None  # a run after the expected ones


def tolist(value: Any) -> list:
    """An encode's output as a Python list: ``.tolist()`` of a tensor or array (one C call, not one per
    value), a list itself (never copied: ms-swift's own ``input_ids``), any other sequence listed."""
    if type(value) is list:
        return value
    return value.tolist() if hasattr(value, 'tolist') else list(value)


def encoded_rows(encoded: Mapping, key: str) -> list | None:
    """``encoded[key]`` (``image_sizes``, ``image_grid_thw``, ...) as Python lists; None where the encode lacks it."""
    value = encoded.get(key)
    return None if value is None else tolist(value)


def image_grids(encoded: Mapping, count: int, *, merge_size: int, runs: Sequence[int] | None = None,
                key: str = 'image_grid_thw', tokens: Callable[[int, int, int], int] | None = None,
                ) -> list[tuple[tuple[int, int, int], int] | None] | None:
    """Per image, ``((t, h, w), tokens)`` from the encode's ``key`` rows (``image_grid_thw``: Qwen, GLM,
    PaddleOCR, HunyuanOCR; ERNIE's ``grid_thw``, Kimi-K2.5's ``grid_thws``).

    ``tokens`` is the image's token run where ``runs`` has one per grid row (what the model really
    gets), else ``tokens(t, h, w)`` (default ``t * h * w // merge_size**2``). None where the encode has
    no ``key``; a None entry for an image past its rows.
    """
    rows = encoded_rows(encoded, key)
    if rows is None:
        return None
    use_runs = runs is not None and len(runs) == len(rows)
    merge = merge_size ** 2
    out: list = []
    for i in range(count):
        if i >= len(rows):
            out.append(None)
            continue
        t, h, w = (int(v) for v in rows[i])
        if use_runs:
            out.append(((t, h, w), runs[i]))
        else:
            out.append(((t, h, w), tokens(t, h, w) if tokens else t * h * w // merge))
    return out


def grid_sized(predicted: Sequence, grids: Sequence | None, patch: int) -> list:
    """``predicted`` with each image's grid and tokens from ``grids`` (:func:`image_grids`) and its resized size
    ``grid * patch``; an image without a grid (None) as predicted."""
    if grids is None:
        return list(predicted)
    return [geo if geo is None or found is None else
            updated(geo, grid=found[0], resized_width=found[0][2] * patch, resized_height=found[0][1] * patch,
                    num_tokens=found[1])
            for geo, found in zip(predicted, grids, strict=True)]


def token_id(template: Any, token: str) -> int:
    """The tokenizer id of ``token`` for this template, memoised on the template object."""
    return template_memo(template, token, lambda: template.tokenizer.convert_tokens_to_ids(token))


class Shape:
    """What is kept of an output whose shape alone a family reads (``Family.shape_keys``)."""
    __slots__ = ('shape',)

    def __init__(self, shape):
        self.shape = tuple(shape)


def as_numpy(tensor: Any) -> Any:
    """The tensor's memory as a numpy array (no copy), or None where it has none (GPU, bfloat16, ...)."""
    try:
        return tensor.numpy()
    except (TypeError, RuntimeError, AttributeError):
        return None


def template_memo(template: Any, name: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per template object (a token id, ...), kept on the template under ``name``."""
    cache = template.__dict__.setdefault('_geo_once', {})
    if name not in cache:
        cache[name] = compute()
    return cache[name]
