"""Pixtral and Mistral 3 (Mistral Small 3.1 / 3.2, Ministral 3): fit the longest edge, ceil to patches.

The HF processor decides the size inside the template's ``_encode``: transformers'
``models/pixtral/image_processing_pixtral.py::get_resize_output_image_size`` scales the image
down (never up) so both sides fit ``size['longest_edge']``, flooring each side, then rounds each
side UP to a multiple of the token patch, and resizes to exactly that (a slight stretch).
``image_sizes`` in the encode is that resized (height, width).

The token patch is ``patch_size * spatial_merge_size``: Pixtral 16 x 1 (``PixtralTemplate``
passes ``processor.patch_size``), Mistral 3 14 x 2 = 28 (``Mistral2503Template`` passes
``patch_size * spatial_merge_size``). The text holds ``rows`` lines of ``cols`` ``[IMG]`` tokens,
each line closed by ``[IMG_BREAK]``, the last one by ``[IMG_END]``: ``rows * (cols + 1)`` tokens.
ms-swift refuses an image that floors to a zero side (its token list is empty).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..cache import BoundedCache
from ..geometry import Clamp, GeometryError, ImageGeometry, updated
from . import register_family
from .base import Family, PreprocessSettings, untrained_spec
from .encoded import encoded_rows, token_spans, tolist

# Real processor settings: mistral-community/pixtral-12b, mistralai/Mistral-Small-3.1-24B-Instruct-2503
# (Mistral-Small-3.2 and Ministral-3 reuse the 3.1 vision encoder settings).
PIXTRAL_LONGEST_EDGE = 1024
PIXTRAL_PATCH_SIZE = 16
MISTRAL3_LONGEST_EDGE = 1540
MISTRAL3_PATCH_SIZE = 14
MISTRAL3_MERGE_SIZE = 2


@dataclass(frozen=True)
class PixtralSettings(PreprocessSettings):
    # The resize limit as (height, width); real checkpoints set size={'longest_edge': N}, i.e. N x N.
    max_height: int = MISTRAL3_LONGEST_EDGE
    max_width: int = MISTRAL3_LONGEST_EDGE
    patch_size: int = MISTRAL3_PATCH_SIZE
    merge_size: int = MISTRAL3_MERGE_SIZE

    @property
    def token_patch(self) -> int:
        """Side in pixels of one image token (the patch the image is rounded up to)."""
        return self.patch_size * self.merge_size


def pixtral_resize(*, width: int, height: int, max_width: int, max_height: int,
                   token_patch: int) -> tuple[int, int]:
    """``(width, height)`` as ``get_resize_output_image_size`` gives it; a side may be 0 (refused later).

    Re-implemented so this module imports no torch; tests pin it to transformers' function.
    """
    ratio = max(height / max_height, width / max_width)
    if ratio > 1:
        # transformers floors (not banker's rounding) so the result never exceeds the limit.
        height = int(math.floor(height / ratio))
        width = int(math.floor(width / ratio))
    rows = (height - 1) // token_patch + 1
    cols = (width - 1) // token_patch + 1
    return cols * token_patch, rows * token_patch


_MISTRAL_SOURCE = ("no trained box output in the Mistral Small 3.1/3.2 or Ministral 3 model cards; ms-swift's "
                   "Mistral2503Template keeps Template.norm_bbox='norm1000', so its grounding data is 0-1000")
_PIXTRAL_SOURCE = ("no trained box output in the Pixtral-12B model card; ms-swift's PixtralTemplate keeps "
                   "Template.norm_bbox='norm1000', so its grounding data is 0-1000")
_PIXTRAL_DEFAULTS = {'max_height': PIXTRAL_LONGEST_EDGE, 'max_width': PIXTRAL_LONGEST_EDGE,
                     'patch_size': PIXTRAL_PATCH_SIZE, 'merge_size': 1}


@register_family
class Pixtral(Family):
    name = 'pixtral'
    video_support = 'refused'  # Mistral2503Template.replace_tag asserts media_type == 'image'
    video_support_of = {'pixtral': 'ignored'}  # PixtralTemplate leaves `<video>` in the text
    encoded_keys = ('input_ids', 'image_sizes')
    settings_cls = PixtralSettings
    templates = (
        untrained_spec('mistral_2503', coords_source=_MISTRAL_SOURCE, model_type='mistral3'),
        untrained_spec('mistral_2506', coords_source=_MISTRAL_SOURCE, model_type='mistral3'),
        untrained_spec('mistral_2512', coords_source=_MISTRAL_SOURCE, model_type='mistral3'),
        untrained_spec('mistral_2512_thinking', coords_source=_MISTRAL_SOURCE,
                     model_type='mistral3'),
        untrained_spec('pixtral', coords_source=_PIXTRAL_SOURCE, model_type='pixtral',
                     defaults=_PIXTRAL_DEFAULTS),
    )
    collate_rule = ("ms-swift's Mistral 3 / Pixtral templates concatenate (stack) the rows' pixel_values, each padded "
                    "to its row's largest resized width and height: a batch cannot mix rows whose padded sizes "
                    "differ ('Sizes of tensors must match', 'stack expects each tensor to be equal size')")

    @classmethod
    def collate_shape(cls, settings, geometries):
        if not geometries:
            return None
        width, height = max(g.resized_width for g in geometries), max(g.resized_height for g in geometries)
        return f'pixel_values {width}x{height}'

    @classmethod
    def settings_from_template(cls, template, settings):
        from swift.template.templates.pixtral import PixtralTemplate

        processor = template.processor
        size = dict(processor.image_processor.size)
        if size.get('longest_edge'):
            max_height = max_width = int(size['longest_edge'])
        else:  # the resize also accepts {'height', 'width'} as the limit
            max_height, max_width = int(size['height']), int(size['width'])
        # PixtralTemplate passes processor.patch_size alone; Mistral2503Template multiplies by the merge.
        merge = 1 if isinstance(template, PixtralTemplate) else int(getattr(processor, 'spatial_merge_size', 1))
        return replace(settings, max_height=max_height, max_width=max_width,
                       patch_size=int(processor.patch_size), merge_size=merge)

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        rw, rh = pixtral_resize(width=width, height=height, max_width=settings.max_width,
                                max_height=settings.max_height, token_patch=settings.token_patch)
        if rw <= 0 or rh <= 0:
            raise GeometryError(f'{name}: fitting {width}x{height} into {settings.max_width}x{settings.max_height} '
                                f'(longest_edge) floors a side to 0 ({rw}x{rh}); the template refuses it.')
        clamp = Clamp.LONGEST_EDGE if max(height / settings.max_height, width / settings.max_width) > 1 else None
        rows, cols = rh // settings.token_patch, rw // settings.token_patch
        return ImageGeometry(original_width=width, original_height=height, resized_width=rw, resized_height=rh,
                             num_tokens=rows * (cols + 1), extra=(('token_rows', rows), ('token_cols', cols))), clamp

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        sizes = encoded_rows(encoded, 'image_sizes')
        if sizes is None:
            return list(predicted)
        proc = template.processor  # the ids the template expanded the image into
        expected = _predicted_grids(predicted)
        grids = image_token_grids(encoded['input_ids'], proc.image_token_id, proc.image_break_token_id,
                                  proc.image_end_token_id, expected)
        if grids == expected and sizes == [[geo.resized_height, geo.resized_width] for geo in predicted]:
            return list(predicted)  # the encode agreed with the prediction: nothing to rebuild
        out = []
        for i, geo in enumerate(predicted):
            if geo is None or i >= len(sizes) or i >= len(grids):
                out.append(geo)
                continue
            (rh, rw), (rows, cols) = sizes[i], grids[i]
            out.append(updated(geo, resized_width=int(rw), resized_height=int(rh),
                               num_tokens=rows * (cols + 1),
                               extra=(('token_rows', rows), ('token_cols', cols))))
        return out


def _predicted_grids(predicted) -> list[tuple[int, int]] | None:
    if any(geo is None for geo in predicted):
        return None
    return [_grid(geo) for geo in predicted]


def _grid(geo: ImageGeometry) -> tuple[int, int]:
    extra = geo.extra
    if len(extra) == 2 and extra[0][0] == 'token_rows' and extra[1][0] == 'token_cols':  # as predict() builds it
        return extra[0][1], extra[1][1]
    extra = dict(extra)
    return extra['token_rows'], extra['token_cols']


def image_token_grids(input_ids: Sequence[int], img: int, brk: int, end: int,
                      expected: Sequence[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """``(rows, cols)`` of each image's token block: ``[IMG]`` runs closed by ``[IMG_BREAK]`` / ``[IMG_END]``.

    A block is rows of ``[IMG]`` each closed by ``[IMG_BREAK]``, the last by ``[IMG_END]``; any other
    token starts over. ``expected`` (the predicted grids) only speeds up finding the runs.
    """
    ids = tolist(input_ids)  # ms-swift's own list: read, never copied
    if expected:
        proved = _proved_grids(ids, img, brk, end, expected)
        if proved is not None:
            return proved
    hint = None if expected is None else [cols for rows, cols in expected for _ in range(rows)]
    grids, rows, cols, next_start = [], 0, None, None
    for start, length in token_spans(ids, img, hint):
        if rows and start != next_start:  # something other than [IMG] followed the last [IMG_BREAK]
            rows, cols = 0, None
        close = ids[start + length] if start + length < len(ids) else None
        if close != brk and close != end:
            rows, cols = 0, None
            continue
        rows += 1
        cols = length if cols is None else cols
        if close == end:
            grids.append((rows, cols))
            rows, cols = 0, None
        else:
            next_start = start + length + 1
    return grids


def _proved_grids(ids: list, img: int, brk: int, end: int,
                  expected: Sequence[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """``expected`` when the ids hold exactly those blocks, each whole, and no other ``[IMG]``; else None.

    One pass over the ids: each block must start at the first ``[IMG]`` after the previous one
    and equal the expected block (compared as one list, at C speed), and no ``[IMG]`` may follow
    the last. So every ``[IMG]`` lies in a block and the token-by-token parse finds exactly these grids.
    """
    if any(not isinstance(n, int) or n <= 0 for grid in expected for n in grid):
        return None
    pos = 0
    try:
        for rows, cols in expected:
            start = ids.index(img, pos)
            if pos == 0:
                img = ids[start]  # the object the template repeated: comparisons stop at identity
            block = _block(img, brk, end, rows, cols)
            pos = start + len(block)
            if ids[start:pos] != block:
                return None
    except ValueError:  # fewer [IMG] runs than expected blocks
        return None
    try:
        ids.index(img, pos)
    except ValueError:
        return [tuple(grid) for grid in expected]
    return None  # an [IMG] outside the blocks


_BLOCKS = BoundedCache(256)


def _block(img: int, brk: int, end: int, rows: int, cols: int) -> list:
    """The ids of one image's ``rows`` x ``cols`` block, remembered (datasets repeat sizes)."""
    key = (img, brk, end, rows, cols)
    block = _BLOCKS.get(key)
    if block is None:
        block = _BLOCKS[key] = ([img] * cols + [brk]) * (rows - 1) + [img] * cols + [end]
    return block
