"""`plan`'s work on rows: reading each row's image headers and predicting their geometry.

Runs in worker processes (``init_worker`` then ``plan_chunk``); images are found as ms-swift
finds them (``swift_ext.images``), headers only unless ``--verify``. The settings helpers say
what a `_geo` template would run with, and what each swept value changes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import os
from collections.abc import Sequence
from typing import Any

from ...cache import BoundedCache
from ...families import family_named
from ...geometry import GeometryError
from ...images import ImageSource, classify, read_image_header
from ...scoring import parse_solution
from ...settings import PreprocessSettings, settings_for, with_budget
from ...truth import TruthError, row_image_index
from ..clamps import LARGE_UPSCALE, upscale_text
from ..clamps import add as add_clamp
from ..dataset import cut, row_images, row_limits
from .stats import MAX_UNIQUE, TOP_ROWS, PlanStats, new_sums
from .video import VideoPlanner

HEADER_CACHE = 65536  # file headers remembered per worker (datasets often repeat images)
SOLUTION_SLACK = 1.0


# --- settings ---------------------------------------------------------------------------------
def plan_settings(template: str, *, max_pixels: int | None = None,
                  min_pixels: int | None = None, max_num: int | None = None,
                  env: dict[str, str] | None = None) -> PreprocessSettings:
    """The settings a `_geo` template would run with, under these flags and environment."""
    return settings_for(template, env=env, swift_max_pixels=max_pixels, min_pixels=min_pixels, max_num=max_num)


def sweep_settings(settings: PreprocessSettings, value: int) -> PreprocessSettings:
    """``settings`` with a pixel budget, applied as the family's own knob (MAX_PIXELS for Qwen)."""
    return with_budget(settings, value)


def tile_knob(settings: PreprocessSettings) -> str | None:
    """The settings field that caps a tiling family's tiles (``max_num``, ...), or None."""
    return family_named(settings.family).tile_knob


def tile_settings(settings: PreprocessSettings, value: int) -> PreprocessSettings:
    return dataclasses.replace(settings, **{tile_knob(settings): value})


# --- the per-chunk work (in a worker process) ----------------------------------------------------------
_WORKER: dict = {}


def init_worker(settings: PreprocessSettings, sweep: Sequence[int], tile_sweep: Sequence[int],
                 base_dir: str, verify: bool, per_image: bool = False) -> None:
    _WORKER.clear()
    _WORKER.update(settings=settings, base_dir=base_dir, verify=verify, headers=BoundedCache(HEADER_CACHE),
                   per_image=per_image, family=family_named(settings.family),
                   sweep=[(v, sweep_settings(settings, v)) for v in sweep],
                   tile_sweep=[(v, tile_settings(settings, v)) for v in tile_sweep],
                   videos=VideoPlanner(settings.template))


def _header(src: Any, info: ImageSource, verify: bool):
    """``(ImageHeader, None)`` or ``(None, GeometryError)``; file headers cached by resolved path."""
    cache = _WORKER['headers']
    key = (info.path, verify) if info.kind == 'path' else None  # payloads are never cached
    if key is not None and key in cache:
        return cache[key]
    try:
        result = read_image_header(src, verify=verify), None
    except GeometryError as exc:
        result = None, exc
    if key is not None:
        cache[key] = result
    return result


def _identity(info: ImageSource) -> int:
    return int.from_bytes(hashlib.blake2b(info.key.encode(), digest_size=8).digest(), 'little')


def _path_note(src: Any, info: ImageSource, base_dir: str) -> tuple[str | None, bool]:
    """A warning about a relative path, and whether ms-swift will miss a file found next to the dataset."""
    raw = src.get('bytes') or src.get('path') if isinstance(src, dict) else src
    if not isinstance(raw, str) or info.kind != 'path' or os.path.isabs(raw.strip()):
        return None, False
    local = os.path.join(base_dir, raw.strip())
    if not os.path.exists(local) or os.path.abspath(local) == info.key:
        return None, False
    if not os.path.exists(info.key):
        return (f'{info.name}: exists next to the dataset ({local}) but ms-swift resolves relative paths '
                'against the working directory, then ROOT_IMAGE_DIR, and finds nothing there: run from the '
                f"dataset's folder or set ROOT_IMAGE_DIR={base_dir}"), True
    if os.path.realpath(local) != os.path.realpath(info.key):
        return (f'{info.name}: ms-swift reads {info.key} (working directory / ROOT_IMAGE_DIR), '
                f'not the file of that name next to the dataset ({local})'), False
    return None, False


def _plan_image(stats: PlanStats, number: int, index: int, src: Any, limits: dict, settings, base_dir: str,
                verify: bool):
    """Plan one image: ``(geo, header)`` or None (failed: recorded) or 'remote'."""
    info = classify(src)
    if info.kind == 'url':
        stats.remote += 1  # not fetched: plan reads local data only
        return 'remote'
    note, missed = _path_note(src, info, base_dir)
    if note and not missed:
        stats.keep('path_warnings', (number, index, info.name, note))
    header, error = _header(src, info, verify)
    if error is None:
        if header.orientation != 1:
            stats.keep('exif', (number, index, info.name, header.orientation))
        try:
            geo, clamped = settings.predict(width=header.width, height=header.height, row_kwargs=limits,
                                            name=info.name)
        except GeometryError as exc:
            error = exc
    if error is not None:
        stats.keep('failures', (number, index, info.name, note if missed else str(error)))
        return None
    stats.tokens_per_image[geo.num_tokens] += 1
    if geo.tile_cols is not None:
        stats.tiles[geo.num_tiles] += 1
    add_clamp(stats.clamped, str(clamped) if clamped else None)
    if geo.max_scale >= LARGE_UPSCALE:
        stats.keep('upscales', (number, index, info.name, upscale_text(
            original=(header.width, header.height), resized=(geo.resized_width, geo.resized_height),
            scale=geo.max_scale)))
    if _WORKER.get('per_image'):
        stats.keep('per_image', (number, index, info.name, geo.to_dict(), None if clamped is None else str(clamped)))
    if len(stats.unique) < MAX_UNIQUE:
        stats.unique.setdefault(_identity(info), geo.num_tokens)
    else:
        stats.unique_overflow = True
    return geo, header


def _swept_tokens(swept: Sequence, headers: list, limits: dict, sums_all: dict[int, list]) -> None:
    """Add one sample to every sweep value's sums."""
    for value, s in swept:
        sums, total = sums_all[value], 0
        for header in headers:
            try:
                g, c = s.predict(width=header.width, height=header.height, row_kwargs=limits)
            except GeometryError:
                sums[2] += 1
                continue
            total += g.num_tokens
            sums[1] += c == 'max_pixels'
        sums[0] += total
        sums[3] = max(sums[3], total)


def _check_solution(stats: PlanStats, number: int, row: dict, headers: list) -> None:
    """Ground truth outside its original image (often 0-1000 units where pixels are expected)."""
    solution = row.get('solution')
    if solution is None or not headers:
        return
    try:
        index = row_image_index(row, len(headers))  # the image the boxes belong to (swift_ext.truth)
    except TruthError:
        return
    boxes = parse_solution(solution)
    header = headers[index]
    if not boxes or header is None:
        return
    w, h = header.width, header.height
    outside = [b for b in boxes if b[2] > w + SOLUTION_SLACK or b[3] > h + SOLUTION_SLACK]
    if outside:
        norm = all(v <= 1000 for b in boxes for v in b)
        stats.keep('solution_issues', (number, [round(v, 1) for v in outside[0]], f'{w}x{h}', norm))


def _plan_row(stats: PlanStats, number: int, row: Any) -> None:
    settings, base_dir, verify = _WORKER['settings'], _WORKER['base_dir'], _WORKER['verify']
    if isinstance(row, Exception):
        raise ValueError(str(row))
    if isinstance(row, str):
        row = json.loads(row)
    if not isinstance(row, dict):
        raise ValueError(f'a row must be a JSON object, got {type(row).__name__}')
    images, limits = row_images(row), row_limits(row)
    _WORKER['videos'].plan_row(stats.video, number, row)
    if not images:
        return
    stats.rows_with_images += 1
    stats.images += len(images)
    tokens, failed, remote, headers, geos = 0, False, False, [], []
    for index, src in enumerate(images):
        result = _plan_image(stats, number, index, src, limits, settings, base_dir, verify)
        if result is None:
            failed = True
            headers.append(None)
        elif result == 'remote':
            remote = True
            headers.append(None)
        else:
            tokens += result[0].num_tokens
            headers.append(result[1])
            geos.append(result[0])
    if failed:  # ms-swift drops (SFT) or stops on (GRPO) a sample whose image fails
        stats.failing_rows += 1
        for sums in list(stats.sweep.values()) + list(stats.tile_sweep.values()):
            sums[2] += 1
    elif remote:
        stats.samples_unchecked += 1  # its tokens are unknown: not a 0-token sample
    else:
        stats.tokens_per_sample[tokens] += 1
        stats.top_rows = heapq.nlargest(TOP_ROWS, stats.top_rows + [(tokens, -number)])
        _swept_tokens(_WORKER['sweep'], headers, limits, stats.sweep)
        _swept_tokens(_WORKER['tile_sweep'], headers, limits, stats.tile_sweep)
        shape = _WORKER['family'].collate_shape(settings, geos)
        if shape is not None:
            stats.add_collate_shape(shape, [number])
    _check_solution(stats, number, row, headers)


def plan_chunk(chunk: list[tuple[int, Any]]) -> PlanStats:
    """Plan a chunk of ``(row_number, row)``; runs in a worker after ``_init_worker``. Never raises."""
    stats = PlanStats(sweep={v: new_sums() for v, _ in _WORKER['sweep']},
                      tile_sweep={v: new_sums() for v, _ in _WORKER['tile_sweep']})
    for number, row in chunk:
        stats.rows += 1
        try:
            _plan_row(stats, number, row)
        except (ValueError, RecursionError) as exc:  # not JSON, too deep, a malformed field
            stats.failing_rows += 1
            stats.keep('failures', (number, None, None, f'unreadable row: {cut(str(exc), 300)}'))
        except Exception as exc:  # anything else a hostile row provokes: reported, never a crash
            stats.failing_rows += 1
            stats.keep('failures', (number, None, None, f'row could not be planned: {type(exc).__name__}: '
                                      f'{cut(str(exc), 300)}'))
    return stats
