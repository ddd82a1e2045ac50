"""What every family's tests share, one copy instead of one per family test file: a train-mode template, a
grounding sample, the encode comparison (and the parent-versus-`_geo` check built on it), a forward pass,
generated images, parity sweeps against the libraries, and seeded random image sizes. Internal (tests).

The size generators are the ones the family tests were written with, kept draw for draw: a test that moves
here keeps its exact sizes and counts.
"""
from __future__ import annotations

import copy
import math
import os
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
    """``a`` and ``b`` (two encodes) have the same keys and equal values: tensors of one dtype element for element,
    lists and dicts item by item, anything else by ``==``."""
    assert sorted(a) == sorted(b), where
    for key in a:
        _assert_same(a[key], b[key], f'{where}{key}')


def _assert_same(a, b, where: str) -> None:
    import torch
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where  # equal ignores dtype
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f'{where}[{i}]')
    elif isinstance(a, dict):
        assert_same_encode(a, b, f'{where}.')
    else:
        assert a == b, where


def assert_encodes_as_parent(processor, parent: str, groups: Iterable[Sequence[str]], row: Callable = sample,
                             **kwargs) -> None:
    """For each group of image paths, ``parent + '_geo'`` encodes ``row(paths)`` exactly as ``parent`` does
    (:func:`assert_same_encode`); ``kwargs`` go to both templates."""
    plain, geo = template(processor, parent, **kwargs), template(processor, parent + '_geo', **kwargs)
    for paths in groups:
        one = row(paths)
        assert_same_encode(plain.encode(copy.deepcopy(one)), geo.encode(copy.deepcopy(one)), f'{parent}: ')


def forward(model, tpl, row: Mapping):
    """``(output, encoded)``: ``model`` run on ``row`` as ms-swift's training feeds it (``tpl.model`` set, encode,
    collate, the post-encode hook turning ids and pixels into embeddings), without gradients."""
    import torch
    tpl.model = model
    encoded = tpl.encode(row)
    batch = tpl.data_collator([encoded])
    tpl.register_post_encode_hook([model])
    try:
        with torch.no_grad():
            return model(**batch), encoded
    finally:
        tpl.remove_post_encode_hook()


def parents_on_class(*classes: type) -> set[str]:
    """The ms-swift templates (not ours, ``_geo``) whose class is one of ``classes`` or below: what a family
    must cover."""
    from swift.template import TEMPLATE_MAPPING
    return {name for name, meta in TEMPLATE_MAPPING.items()
            if not name.endswith('_geo') and issubclass(meta.template_cls, classes)}


def assert_published_settings(processor, template_name: str) -> None:
    """The settings ``template_name`` reads from ``processor`` (a tiny checkpoint's) are the offline defaults,
    which come from the public checkpoint: the tiny recipe kept its processor real (versions aside)."""
    from swift_ext.settings import default_settings
    live = template(processor, template_name).geo_settings()
    assert {**live.to_dict(), 'versions': {}} == {**default_settings(template_name).to_dict(), 'versions': {}}


def assert_prescaled_first(template_name: str, width: int = 1600, height: int = 1200,
                           swift_max_pixels: int = 250_000) -> tuple:
    """``template_name``'s prediction under ms-swift's ``--max_pixels`` pre-rescale: it names that clamp and keeps the
    original size. Returns ``(geo, plain, (w, h))``, ``plain`` the prediction without the pre-rescale on the size
    ``(w, h)`` it gave, for the family's own comparison."""
    from swift_ext.geometry import Clamp, swift_rescaled_size
    from swift_ext.settings import default_settings
    geo, clamped = default_settings(template_name, swift_max_pixels=swift_max_pixels).predict(width=width,
                                                                                               height=height)
    w, h = swift_rescaled_size(width=width, height=height, max_pixels=swift_max_pixels)
    plain, _ = default_settings(template_name).predict(width=w, height=h)
    assert clamped == Clamp.MAX_PIXELS and (geo.original_width, geo.original_height) == (width, height)
    return geo, plain, (w, h)


def save_image(folder, width: int, height: int, fill: tuple | None = None, *, boxed: bool = False) -> str:
    """Write ``folder/img_{width}x{height}.png`` and return its path: one colour (``fill``, else one the size
    picks), or with ``boxed`` a red box on grey (the middle half of each side, at least a pixel)."""
    from PIL import Image
    if boxed:
        image = Image.new('RGB', (width, height), (200, 200, 200))
        image.paste((220, 30, 30), (width // 4, height // 4, max(width // 4 + 1, 3 * width // 4),
                                    max(height // 4 + 1, 3 * height // 4)))
    else:
        image = Image.new('RGB', (width, height), fill or (width % 256, height % 256, 90))
    path = os.path.join(str(folder), f'img_{width}x{height}.png')
    image.save(path)
    return path


def drawn_image(folder, width: int, height: int, rect: Sequence[int] | None = None) -> str:
    """A new grey image (no pixel equals a zero padding) in ``folder``, with a red rectangle ``rect`` (x1, y1,
    x2, y2) where given; its path, unique in ``folder``."""
    from PIL import Image, ImageDraw
    image = Image.new('RGB', (width, height), (180, 180, 180))
    if rect is not None:
        ImageDraw.Draw(image).rectangle(rect, fill=(230, 20, 20))
    path = os.path.join(str(folder), f'img_{width}x{height}_{len(os.listdir(folder))}.png')
    image.save(path)
    return path


def write_images(folder, sizes: Iterable[Size], fill: tuple | None = None, *, boxed: bool = False) -> dict:
    """``{(width, height): path}``: :func:`save_image` for each size."""
    return {(w, h): save_image(folder, w, h, fill, boxed=boxed) for w, h in sizes}


def resize_parity(sizes: Iterable[Size], ours: Callable, theirs: Callable) -> tuple[list, set]:
    """``ours(w, h) -> ((w, h), clamp)`` against the library's ``theirs(w, h) -> (w, h)`` over ``sizes``, a refusal
    (our GeometryError, their ValueError) counting as ``'refused'``: ``(mismatches, the clamps seen)``, each
    mismatch ``((w, h), ours, theirs)``."""
    from swift_ext.geometry import GeometryError
    mismatches, outcomes = [], set()
    for w, h in sizes:
        try:
            mine, clamp = ours(w, h)
        except GeometryError:
            mine, clamp = 'refused', 'refused'
        try:
            real = theirs(w, h)
        except ValueError:
            real = 'refused'
        outcomes.add(clamp)
        if mine != real:
            mismatches.append(((w, h), mine, real))
    return mismatches, outcomes


def zero_floor_parity(modules: Sequence, sizes: Iterable[Size], *, factor: int, min_pixels: int,
                      max_pixels: int) -> tuple[list, set]:
    """:func:`resize_parity` of ``swift_ext.geometry.zero_floor_smart_resize`` against the ``smart_resize`` of each
    of ``modules`` (transformers' torchvision and PIL image processors each carry a copy: ERNIE-4.5-VL,
    HunYuanVL), which must agree; a zero side is its own outcome, ``'zero side'``."""
    from swift_ext.geometry import GeometryError, zero_floor_smart_resize

    def ours(w, h):
        try:
            return zero_floor_smart_resize(width=w, height=h, factor=factor, min_pixels=min_pixels,
                                           max_pixels=max_pixels)
        except GeometryError as e:
            if 'zero side' not in str(e):
                raise
            return 'zero side', 'refused'

    def one(module, w, h):
        try:
            rh, rw = module.smart_resize(h, w, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
        except ValueError:
            return 'refused'
        return (rw, rh) if rw > 0 and rh > 0 else 'zero side'

    def theirs(w, h):
        found = [one(module, w, h) for module in modules]
        return found[0] if all(x == found[0] for x in found) else tuple(found)

    return resize_parity(sizes, ours, theirs)


def assert_token_parity(image_processor, settings, sizes: Iterable[Size], merge: int = 2) -> int:
    """Over ``sizes``, each prediction of ``settings`` has the image processor's own patch count
    (``get_number_of_image_patches``) as its grid and that over ``merge**2`` as its tokens; where the processor
    refuses, the prediction refuses an aspect ratio over 200. Returns how many sizes were compared."""
    import pytest

    from swift_ext.geometry import GeometryError
    checked = 0
    for w, h in sizes:
        try:
            patches = image_processor.get_number_of_image_patches(h, w, {})
        except ValueError:
            with pytest.raises(GeometryError, match='aspect ratio over 200'):
                settings.predict(width=w, height=h)
            continue
        geo, _ = settings.predict(width=w, height=h)
        assert geo.num_tokens * merge ** 2 == patches == geo.grid[1] * geo.grid[2], (w, h)
        checked += 1
    return checked


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
