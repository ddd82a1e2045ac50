"""`show`'s model view and facts: what the model is handed, from ``ImageGeometry`` fields alone."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from ...families import family_of
from ...geometry import ImageGeometry
from ...settings import PreprocessSettings
from ..clamps import LARGE_UPSCALE, describe, upscale_text

MAX_LABEL_CHARS = 100  # a longer image path is cut in the middle


# --- what to draw, from the geometry alone ------------------------------------------------------
@dataclass(frozen=True)
class ModelView:
    """The model's view of one image, in model pixels (``frame`` is what its answers refer to)."""

    frame: tuple[int, int]  # (width, height): canvas, else the resized image
    content: tuple[int, int, int, int]  # (left, top, width, height) of the resized image in the frame
    tiles: tuple[int, int] | None  # (cols, rows)
    tile_size: tuple[float, float] | None
    global_size: tuple[int, int] | None  # the extra whole-image view, where there is one
    global_name: str  # 'global view' or 'thumbnail'
    cells: tuple[int, int] | None  # (cols, rows) of visual-token cells over the frame
    grid_note: str  # how the cells were derived, for the facts

    @property
    def padded(self) -> bool:
        return self.content != (0, 0) + self.frame


def frame_size(geo: ImageGeometry) -> tuple[int, int]:
    """The padded canvas (``canvas_*``, or a family's ``extra`` canvas) or else the resized size."""
    extra = dict(geo.extra)
    width = geo.canvas_width or extra.get('canvas_width') or geo.resized_width
    height = geo.canvas_height or extra.get('canvas_height') or geo.resized_height
    return int(width), int(height)


def merge_of(geo: ImageGeometry, settings: PreprocessSettings) -> int:
    """Patches per token side: from ``t * h * w / tokens`` when that is a square, else the settings'."""
    t, gh, gw = geo.grid
    if geo.num_tokens > 0 and (t * gh * gw) % geo.num_tokens == 0:
        merge = math.isqrt(t * gh * gw // geo.num_tokens)
        if merge > 0 and merge * merge * geo.num_tokens == t * gh * gw and gh % merge == 0 and gw % merge == 0:
            return merge
    return int(getattr(settings, 'merge_size', 1) or 1)


def token_cells(geo: ImageGeometry, settings: PreprocessSettings, frame: tuple[int, int]):
    """``((cols, rows), note)`` of one-token cells over the frame, or ``(None, '')``."""
    extra = dict(geo.extra)
    if geo.grid is not None:
        t, gh, gw = geo.grid
        merge = merge_of(geo, settings)
        patch = frame[0] / gw
        note = f'patch grid {t} x {gh} x {gw}, patch {_num(patch)} px, merge {merge}'
        return (gw // merge, gh // merge), note
    if extra.get('token_cols') and extra.get('token_rows'):
        return (int(extra['token_cols']), int(extra['token_rows'])), 'token_cols x token_rows'
    return None, ''


def model_view(geo: ImageGeometry, settings: PreprocessSettings) -> ModelView:
    frame = frame_size(geo)
    content = (geo.pad_left, geo.pad_top, geo.resized_width, geo.resized_height)
    tiles = tile_size = global_size = None
    global_name = 'global view'
    if geo.tile_cols and geo.tile_rows:
        tiles = (geo.tile_cols, geo.tile_rows)
        tile_size = (frame[0] / geo.tile_cols, frame[1] / geo.tile_rows)
    if geo.global_width and geo.global_height:
        global_size = (geo.global_width, geo.global_height)
    elif geo.thumbnail and tile_size is not None:
        global_size, global_name = (round(tile_size[0]), round(tile_size[1])), 'thumbnail'
    cells, note = token_cells(geo, settings, frame)
    return ModelView(frame=frame, content=content, tiles=tiles, tile_size=tile_size, global_size=global_size,
                global_name=global_name, cells=cells, grid_note=note)


# --- the facts, printed and drawn -------------------------------------------------------------------
def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f'{value:.1f}'


def _short(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    keep = limit // 2
    return text if len(text) <= limit else f'{text[:keep]}...{text[-keep:]}'


def size_text(width: float, height: float) -> str:
    return f'{_num(width)} x {_num(height)}'


def _pair(key: str, extra: dict) -> tuple[str, str, str] | None:
    """``(name, first, second)`` when ``key`` is half of an ``X_width``/``X_height`` or ``X_cols``/``X_rows`` pair."""
    for first, second in (('_width', '_height'), ('_cols', '_rows')):
        for mine, other in ((first, second), (second, first)):
            prefix = key[:-len(mine)]
            if key.endswith(mine) and prefix + other in extra:
                name = prefix.replace('_', ' ') + (' grid' if first == '_cols' else '')
                return name, prefix + first, prefix + second
    return None


def _extra_facts(extra: dict, used: set) -> list[tuple[str, str]]:
    """A family's ``extra`` facts, a width/height or cols/rows pair as one ``A x B`` line."""
    out = []
    for key, value in extra.items():
        if key in used:
            continue
        pair = _pair(key, extra)
        if pair is None:
            out.append((key.replace('_', ' '), str(value)))
            used.add(key)
        else:
            out.append((pair[0], size_text(extra[pair[1]], extra[pair[2]])))
            used.update(pair[1:])
    return out


def facts(image: str, geo: ImageGeometry, settings: PreprocessSettings, view: ModelView,
          clamped: str | None = None, env: dict | None = None, model: str | None = None) -> list[tuple[str, str]]:
    """``(label, value)`` lines: what the text output prints and the picture's header shows (``model``: the
    checkpoint the settings were read from; None: the built-in defaults)."""
    family, _ = family_of(settings.template)
    where = f'read from {_short(model)}' if model else 'built-in defaults (--model DIR reads a checkpoint)'
    out = [('image', _short(image)), ('template', f'{settings.template} (family {settings.family})'),
           ('settings', where),
           ('original', size_text(geo.original_width, geo.original_height)),
           ('resized', size_text(geo.resized_width, geo.resized_height))]
    if view.padded:
        out.append(('canvas', f'{size_text(*view.frame)}, image at ({geo.pad_left}, {geo.pad_top})'))
    if view.tiles is not None:
        views = f'{geo.num_tiles} view' + ('s' if geo.num_tiles != 1 else '')
        glob = f' + {view.global_name} {size_text(*view.global_size)}' if view.global_size else ''
        out.append(('tiles', f'{view.tiles[0]} x {view.tiles[1]} of {size_text(*view.tile_size)}{glob} ({views})'))
    else:
        glob = f' + {view.global_name} {size_text(*view.global_size)}' if view.global_size else ''
        out.append(('tiles', f'none{glob} ({geo.num_tiles} view' + ('s)' if geo.num_tiles != 1 else ')')))
    if view.cells is not None:
        cell = (view.frame[0] / view.cells[0], view.frame[1] / view.cells[1])
        out.append(('token grid', f'{view.cells[0]} x {view.cells[1]} cells of {size_text(*cell)} px '
                                  f'({view.grid_note})'))
    out += _extra_facts(dict(geo.extra), {'canvas_width', 'canvas_height', 'token_cols', 'token_rows'})
    out.append(('visual tokens', str(geo.num_tokens)))
    if settings.swift_max_pixels:
        out.append(('--max_pixels', str(settings.swift_max_pixels)))
    env = os.environ if env is None else env
    set_vars = [f'{name}={env[name]}' for name in family.env_vars if env.get(name)]
    if set_vars:
        out.append(('environment', ', '.join(set_vars)))
    out.append(('limit', describe(clamped)))  # the clamp named by what it is (geometry.Clamp)
    if geo.max_scale >= LARGE_UPSCALE:
        out.append(('upscale', upscale_text(original=(geo.original_width, geo.original_height),
                                            resized=(geo.resized_width, geo.resized_height), scale=geo.max_scale)))
    return out


def format_text(lines: Sequence[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in lines) + 1
    return '\n'.join(f'{label + ":":<{width}} {value}' for label, value in lines)
