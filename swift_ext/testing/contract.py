"""What every family's tests share: a train-mode template, a grounding sample, the encode comparison, and
seeded random image sizes. Internal (tests, benchmarks): one copy here instead of one per family test file.

The size generators are the ones the family tests were written with, kept draw for draw: a test that moves
here keeps its exact sizes and counts.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence

Size = tuple[int, int]

PROMPT = 'Where is the red box?'
ANSWER = '[10, 20, 30, 40]'


def template(processor, name: str, **kwargs):
    """ms-swift's template ``name`` over ``processor``, in train mode (labels encoded)."""
    from swift.template import get_template
    tpl = get_template(processor, template_type=name, **kwargs)
    tpl.set_mode('train')
    return tpl


def checkpoint_template(checkpoint: str, name: str, model_type: str, **kwargs):
    """:func:`template` over the processor of the checkpoint folder ``checkpoint`` (ms-swift's ``model_type``)."""
    from swift.model import get_processor
    return template(get_processor(checkpoint, model_type=model_type), name, **kwargs)


def sample(paths: Sequence[str], prompt: str = PROMPT, answer: str = ANSWER, *, tag: str = '<image>', **extra) -> dict:
    """One grounding row: a ``tag`` per path (none with ``tag=''``: Florence-2's task prompts), then ``prompt``;
    ``answer`` as the assistant's reply; ``extra`` keys added to the row."""
    return {'messages': [{'role': 'user', 'content': tag * len(paths) + prompt},
                         {'role': 'assistant', 'content': answer}], 'images': list(paths), **extra}


def assert_same_encode(a: Mapping, b: Mapping, where: str = '') -> None:
    """``a`` and ``b`` (two encodes) have the same keys and equal values: tensors element for element,
    lists and dicts item by item, anything else by ``==``."""
    assert sorted(a) == sorted(b), where
    for key in a:
        _assert_same(a[key], b[key], f'{where}{key}')


def _assert_same(a, b, where: str) -> None:
    import torch
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f'{where}[{i}]')
    elif isinstance(a, dict):
        assert_same_encode(a, b, f'{where}.')
    else:
        assert a == b, where


# ------------------------------------------------------------------------------------------ random sizes
def log_uniform(rng: random.Random, top: int) -> Size:
    """A (width, height) with each side log-uniform in [1, top)."""
    return int(math.exp(rng.uniform(0, math.log(top)))), int(math.exp(rng.uniform(0, math.log(top))))


def filled(fixed: Iterable[Size], n: int, rng: random.Random, top: int) -> list[Size]:
    """``fixed`` topped up with log-uniform sizes (:func:`log_uniform`) to ``n`` distinct ones, sorted,
    those with a side under 1 dropped."""
    out = set(fixed)
    while len(out) < n:
        out.add(log_uniform(rng, top))
    return sorted(s for s in out if min(s) >= 1)


def mixed_sizes(seed: int, n: int, factor: int = 28) -> list[Size]:
    """``n`` sizes in six kinds by turn: tiny, ordinary, huge, near and past the 200:1 limit, multiples of
    ``factor`` and their neighbours, thin; each either way round."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            w, h = rng.randint(1, 60), rng.randint(1, 60)
        elif kind == 1:
            w, h = rng.randint(1, 4000), rng.randint(1, 4000)
        elif kind == 2:
            w, h = rng.randint(2000, 20000), rng.randint(2000, 20000)
        elif kind == 3:  # near and past the 200:1 limit, either way round
            short = rng.randint(1, 40)
            w, h = short, short * rng.randint(150, 260) + rng.randint(-5, 5)
        elif kind == 4:  # multiples of the factor and their neighbours
            w, h = factor * rng.randint(1, 80) + rng.randint(-1, 1), factor * rng.randint(1, 80) + rng.randint(-1, 1)
        else:
            w, h = rng.randint(1, 30), rng.randint(100, 6000)
        w, h = max(1, w), max(1, h)
        out.append((w, h) if rng.random() < 0.5 else (h, w))
    return out


def slice_sizes(n: int, seed: int) -> list[Size]:
    """Sizes from 1 to 20k pixels a side, extreme ratios, and MiniCPM-V's slice-count boundaries (k * 448**2
    pixels); each either way round."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.3:
            w, h = rng.randint(1, 6000), rng.randint(1, 6000)
        elif kind < 0.5:
            w, h = rng.randint(1, 64), rng.randint(1, 12000)
        elif kind < 0.7:
            w, h = rng.randint(300, 1500), rng.randint(300, 1500)
        elif kind < 0.85:  # near k * 448**2 pixels, where the slice count changes
            k = rng.randint(1, 12)
            w = rng.randint(200, 3000)
            h = max(1, k * 448 * 448 // w + rng.randint(-2, 2))
        else:
            w, h = rng.randint(1, 20000), rng.randint(1, 300)
        out.append((w, h) if rng.random() < 0.5 else (h, w))
    return out


def tile_sizes(n: int, seed: int, tile: int, ratios: Sequence[float]) -> list[Size]:
    """Tiny, extreme, tile-boundary (``tile`` times 0.5 to 4, by each of ``ratios``, +-1) and log-uniform
    sizes up to 9000, as (width, height)."""
    rng = random.Random(seed)
    out = {(w, h) for w in (1, 2, 3, 7) for h in (1, 2, 3, 7, 500, 5000)}
    out |= {(h, w) for w in (1, 2) for h in (900, 9000)}
    for k in (0.5, 1, 2, 3, 4):
        out |= {(round(tile * k) + dw, round(tile * k * r) + dh) for dw in (-1, 0, 1) for dh in (-1, 0, 1)
                for r in ratios}
    return filled(out, n, rng, 9000)


def factor_sizes(n: int, seed: int, factor: int, *, tiny_top: int, tall: int) -> list[Size]:
    """Tiny sides below ``tiny_top``, ratios near 200:1 on sides around ``factor`` and its half, sides half a
    ``factor`` off its multiples (``tall`` factors high), both ways round; then log-uniform up to 20000."""
    rng = random.Random(seed)
    half = factor // 2
    out = {(w, h) for w in range(1, tiny_top, 3) for h in range(1, tiny_top, 3)}
    out |= {(short, short * ratio + d) for short in (1, 2, half - 1, half, half + 1, factor - 1, factor)
            for ratio in (150, 200, 201) for d in (-1, 0, 1)}
    out |= {(factor * a + d, factor * b) for a in (1, 40, 100) for b in (2, tall)
            for d in (-half, -half + 1, half - 1, half)}
    out |= {(h, w) for w, h in list(out)}
    return filled(out, n, rng, 20000)


def qwen_sizes(seed: int, n: int, boundary: Callable[[random.Random], Size]) -> list[Size]:
    """Half uniform up to 6000, a tenth tiny, a fifth around the 200:1 refusal, the rest ``boundary(rng)``
    (sizes around a family's factor and limits)."""
    rng = random.Random(seed)
    sizes = [(rng.randint(1, 6000), rng.randint(1, 6000)) for _ in range(n // 2)]
    sizes += [(rng.randint(1, 64), rng.randint(1, 64)) for _ in range(n // 10)]
    for _ in range(n // 5):  # around the 200:1 refusal
        short = rng.randint(1, 60)
        long_side = short * 200 + rng.randint(-3, 3)
        sizes.append((long_side, short) if rng.random() < 0.5 else (short, long_side))
    while len(sizes) < n:
        sizes.append(boundary(rng))
    return [(max(1, w), max(1, h)) for w, h in sizes]
