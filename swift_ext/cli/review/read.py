"""Reading a run folder: which files it holds, its image_geometry lines, and its header facts.

Everything here reads files someone else may have written, within the bounds of ``bounded``
and the line limits of the run-log contract (``runlog.MAX_*_LINE``).
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import msgspec

from ...runlog import (
    COMPLETIONS_FILE,
    GEOMETRY_GLOB,
    LOGGING_FILE,
    MAX_ARGS_BYTES,
    MAX_GEO_LINE,
    SETTINGS_FILE,
    geometry_records,
)
from ..bounded import FileStatus, iter_lines, iter_raw_lines, open_regular, refuse_reason, short

RUN_NAME = re.compile(r'^v(\d+)-(\d{8})-(\d{6})')
RUN_FACTS = ('model', 'model_type', 'template', 'max_pixels', 'rlhf_type', 'num_generations')

Side = Annotated[int, msgspec.Meta(ge=0, le=1 << 31)] | None


class GeoLine(msgspec.Struct):
    """The fields of an image_geometry line that review reads (others are skipped unparsed).

    Names are the run-log contract's (``runlog.RECORD_HEAD`` / ``RECORD_TAIL`` and the geometry's
    fields). Bounds on the numbers make a line with a side of 10**30 or a negative token count
    a bad line, not a crash later in the arithmetic.
    """

    step: Annotated[int, msgspec.Meta(ge=-1, le=1 << 53)] | None = None
    kind: str = 'image'  # 'video' for a video's line (runlog.line_kind); review reads image lines only
    rank: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] = 0
    mode: str = 'train'
    image: str | None = None
    template: str | None = None
    original_width: Side = None
    original_height: Side = None
    resized_width: Side = None
    resized_height: Side = None
    num_tokens: Side = None
    tile_cols: Side = None
    num_tiles: Annotated[int, msgspec.Meta(ge=0, le=1 << 31)] = 1
    clamped: str | list[str] | None = None  # a video line's is a list (VideoClamp names)
    video: str | None = None  # a video line's: the video (review/video.py)
    frame_indices: list[int] | None = None  # a video line's: the frames sampled
    mismatch: dict[str, Any] | None = None
    error: str | None = None


GEO_DECODER = msgspec.json.Decoder(GeoLine)
GEO_ERRORS = (ValueError, RecursionError, msgspec.DecodeError)


# --- files of a run -------------------------------------------------------------------------------
def geometry_files(run_dir: str) -> list[str]:
    """The run's geometry files, rank 0 first, then by rank number (no glob on the folder name)."""
    try:
        names = [n for n in os.listdir(run_dir) if fnmatch.fnmatchcase(n, GEOMETRY_GLOB)]
    except OSError:
        return []

    def order(name: str):
        m = re.fullmatch(r'image_geometry(?:\.rank(\d+))?\.jsonl', name)
        return (0, int(m.group(1) or 0), name) if m else (1, 0, name)
    return [os.path.join(run_dir, n) for n in sorted(names, key=order)]


def has_logs(folder: str) -> bool:
    return bool(geometry_files(folder)) or any(
        os.path.exists(os.path.join(folder, f)) for f in (LOGGING_FILE, COMPLETIONS_FILE))


def find_runs(folder: str) -> list[str]:
    """``v<N>-<time>`` run folders inside ``folder`` that hold logs, oldest first."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    runs = []
    for name in names:
        m = RUN_NAME.match(name)
        path = os.path.join(folder, name)
        if m and os.path.isdir(path) and has_logs(path):
            runs.append((int(m.group(1)), name, path))
    return [p for _, _, p in sorted(runs)]


def log_paths(run_dir: str) -> list[str]:
    """Every file review streams (for the progress bar's total)."""
    return geometry_files(run_dir) + [os.path.join(run_dir, f) for f in (LOGGING_FILE, COMPLETIONS_FILE)]


# --- image_geometry lines ------------------------------------------------------------------------------
def geometry_lines(path: str, status: FileStatus, *, decode: Callable[[bytes], Any] = GEO_DECODER.decode,
                   errors: tuple = GEO_ERRORS, progress=None) -> Iterator[tuple[int, Any]]:
    """``(line number, record)`` of one geometry file: the one way review and its gallery read them.

    Lines go through ``runlog.geometry_records`` (the reader every consumer of the file shares);
    bad lines are counted in ``status``, a cut-off last line is noted as truncated.
    """
    raw = iter_raw_lines(path, status, MAX_GEO_LINE, progress)
    yield from geometry_records(raw, decode=decode, errors=errors, bad=status.undecodable)


# --- run information -------------------------------------------------------------------------------
def read_run_info(run_dir: str) -> dict:
    """Model, template, settings fingerprints and date of a run, for the report header."""
    info: dict[str, Any] = {'run': os.path.basename(os.path.abspath(run_dir))}
    m = RUN_NAME.match(info['run'])
    if m:
        d, t = m.group(2), m.group(3)
        info['date'] = f'{d[:4]}-{d[4:6]}-{d[6:]} {t[:2]}:{t[2:4]}:{t[4:]}'
    args = read_args(run_dir)
    for key in RUN_FACTS:
        if isinstance(args.get(key), (str, int, float)) and not isinstance(args.get(key), bool):
            info[key] = short(args[key], 200) if isinstance(args[key], str) else args[key]
    status = FileStatus(os.path.join(run_dir, SETTINGS_FILE))
    fingerprints: dict[str, dict] = {}
    for _, rec in iter_lines(status.path, status, max_line=MAX_GEO_LINE):
        if not isinstance(rec, dict) or not isinstance(rec.get('fingerprint'), str):
            continue
        fp = short(rec['fingerprint'], 40)
        if fp not in fingerprints and len(fingerprints) < 20:
            settings = rec.get('settings') if isinstance(rec.get('settings'), dict) else {}
            fingerprints[fp] = {'role': short(rec.get('role') or '', 40), 'settings': settings}
    info['fingerprints'] = list(fingerprints)
    first = next(iter(fingerprints.values()), None)
    if first and first['settings']:
        info['settings'] = first['settings']
        if 'template' not in info and isinstance(first['settings'].get('template'), str):
            info['template'] = short(first['settings']['template'], 80)
    return info


def read_args(run_dir: str) -> dict:
    """ms-swift's ``args.json`` of the run, or ``{}`` where it is missing, too large or not an object."""
    path = os.path.join(run_dir, 'args.json')
    if refuse_reason(path):
        return {}
    try:
        with open_regular(path) as f:
            data = f.read(MAX_ARGS_BYTES + 1)
        args = json.loads(data) if len(data) <= MAX_ARGS_BYTES else None
    except (OSError, ValueError, RecursionError):
        return {}
    return args if isinstance(args, dict) else {}
