"""Clamp names as the tools print them: one vocabulary (``geometry.Clamp``) counted by `plan`, `review`, `show`.

A record's ``clamped`` says which limit changed an image's size beyond the model's own rounding; the
`vision/` metrics count each name (``callback.step_values``), and so do the tools, through ``counts``.
A large upscale is flagged from the net scale (``ImageGeometry.max_scale``), whatever the name: an image
pre-rescaled by ``--max_pixels`` and then enlarged to a fixed input is named ``max_pixels``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..geometry import Clamp

OTHER = 'other'  # a name outside the vocabulary (a foreign or damaged log): counted, never a key of its own
# What each name means, in words (a tool never says "shrunk by max_pixels" for a canvas fit).
MEANINGS = {
    Clamp.MAX_PIXELS.value: "shrunk by a pixel cap (--max_pixels, a row's max_pixels or the model's own cap)",
    Clamp.MIN_PIXELS.value: 'grown by a pixel floor (min_pixels)',
    Clamp.LONGEST_EDGE.value: 'shrunk to the longest-edge cap (longest_edge)',
    Clamp.MAX_SOFT_TOKENS.value: 'shrunk to the visual-token budget (max_soft_tokens)',
    Clamp.CANVAS_FIT.value: "fitted (shrunk or stretched) into the model's fixed canvas, input size or tile grid",
    Clamp.UPSCALE.value: "enlarged to the model's fixed input, canvas, tile grid or token budget",
}
_NAMES = frozenset(MEANINGS)
MEANINGS[OTHER] = "a name outside swift-ext's clamp vocabulary (a foreign or damaged log)"
# An image enlarged this many times or more on one axis is flagged: the model sees interpolated pixels
# (a 30 x 30 icon handed to LLaVA's 336 x 336 input is blown up 11.2 times).
LARGE_UPSCALE = 4.0


def counts(names: Iterable[str | None]) -> dict[str, int]:
    """``{clamp name: images}`` for every name of ``geometry.Clamp`` (zeros kept, so a total reads the same
    in every run); a name outside the vocabulary is counted under ``other``."""
    out = {c.value: 0 for c in Clamp}
    for name in names:
        add(out, name)
    return out


def add(clamped: dict[str, int], name) -> None:
    """Count one image's clamp ``name`` (None: none) into a ``counts`` dict."""
    if name:
        key = name if isinstance(name, str) and name in _NAMES else OTHER
        clamped[key] = clamped.get(key, 0) + 1


def merged(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for name, n in b.items():
        out[name] = out.get(name, 0) + n
    return out


def describe(name: str | None) -> str:
    """``name: meaning`` for one image's clamp (``show``)."""
    if not name:
        return "none: only the model's rounding to its patch or tile multiple changed the size"
    return f'{name}: {MEANINGS.get(str(name), MEANINGS[OTHER])}'


def summary_lines(clamped: Mapping[str, int], indent: str = '  ') -> list[str]:
    """The text lines of a ``counts`` dict: each name that changed an image, with its meaning."""
    reached = [(name, n) for name, n in clamped.items() if n]
    if not reached:
        return [f"{indent}size limits: none reached (only the model's rounding changed sizes)"]
    return [f'{indent}size limits reached:'] + [f'{indent}  {name} {n:,}: {MEANINGS[name]}' for name, n in reached]


def upscale_text(*, original: tuple[int, int], resized: tuple[int, int], scale: float) -> str:
    return (f'{original[0]}x{original[1]} enlarged {scale:.1f}x to {resized[0]}x{resized[1]} '
            '(the model sees interpolated pixels)')
