"""What a `_geo` template records of each video it encodes (the video side of ``swift_ext.templates``).

Per encode: one :class:`~swift_ext.families.base.VideoEntry` per video (its identity, name and the
source as ms-swift resolved it), what the parent's ``replace_tag`` handed on (``Family.replaced_video``),
and, when the recorder resolves the encode, the geometry: predicted from the file's header (read once
per video, settings and row limits; no frame is decoded) and corrected by what the encode shows
(``Family.actual_video``). The geometry goes to ``VIDEO_STORE`` for rewards and into the encode's log
lines. Internal module; nothing here runs unless a row has a video, and the video reader
(``swift_ext.video_io``, PyAV) is imported only then.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from .families.base import VideoEntry
from .geometry import GeometryError, VideoError, VideoGeometry
from .images import classify
from .store import VIDEO_STORE, video_limits_key
from .warn import warn_once

# A video given as a list of more frame files than this is named, not listed, in messages.
MAX_NAMED_FRAMES = 3


def video_entry(source: Any) -> VideoEntry:
    """A video's identity and short name, before the encode reads it. Never raises."""
    if isinstance(source, (list, tuple)):
        keys = [classify(frame).key for frame in source]
        digest = hashlib.sha1('\n'.join(keys).encode('utf-8', 'backslashreplace')).hexdigest()
        first = classify(source[0]).name if source else '<no frame>'
        return VideoEntry(key=f'frames:{digest}', name=f'{first} (+{max(0, len(source) - 1)} frames)',
                          source=list(source))
    info = classify(source)
    error = GeometryError(f'{info.name}: {info.error}.') if info.kind == 'invalid' else None
    return VideoEntry(key=info.key, name=info.name, source=source, error=error)


def refusal(entry: VideoEntry, exc: BaseException) -> VideoError:
    """The error for a video the parent's ``replace_tag`` could not read: the video's name and why.

    The reader's own message often hides the cause (qwen-vl-utils falls back to torchvision, which
    has no ``read_video``), so the header is read for a plain reason first.
    """
    reason = None
    if not isinstance(entry.source, (list, tuple)):
        from .video_io import read_video_header
        try:
            read_video_header(entry.source)
        except GeometryError as header_error:
            reason = str(header_error)
        except Exception:  # a header reader bug must not replace the encode's own error
            reason = None
    if reason is None:
        reason = f'{entry.name}: video could not be read ({type(exc).__name__}: {exc})'
    return VideoError(reason[:500])


def predicted(template, entries: Sequence[VideoEntry], row_kwargs: Mapping, mode: str) -> list:
    """Each video's predicted geometry (None, with one warning, where it cannot be read from its header).

    Remembered per (video, row limits, mode) for the template's current settings: a GRPO step encodes
    a prompt's video once per generation.
    """
    family, parent = template.geo_family, template.geo_spec.parent
    settings, memo = template.geo_video_settings(), template.geo_memo()
    limits = video_limits_key(row_kwargs)
    out = []
    for entry in entries:
        key = ('video', entry.key, limits, mode)
        geo = memo.get(key)
        if geo is None:
            try:
                geo = memo[key] = _predict(family, parent, settings, entry, row_kwargs, mode)
            except Exception as exc:  # VideoError, a header the encode's reader read but PyAV cannot
                warn_once(f'video-predict:{type(exc).__name__}',
                          f'swift-ext: no video geometry for {entry.name} ({str(exc)[:300]}); its encode is '
                          'not logged, and rewards get None for it. Further such videos are not warned about.')
                geo = None
        out.append(geo)
    return out


def _predict(family, parent: str, settings, entry: VideoEntry, row_kwargs: Mapping, mode: str) -> VideoGeometry:
    from .video_io import image_list_sizes, read_video_header
    if isinstance(entry.source, (list, tuple)):
        return family.predict_video_frames(parent, settings, sizes=image_list_sizes(entry.source),
                                           row_kwargs=row_kwargs, mode=mode, name=entry.name)
    header = read_video_header(entry.source, backend=family.video_header_backend)
    return family.predict_video(parent, settings, width=header.width, height=header.height,
                                total_frames=header.total_frames, video_fps=header.video_fps,
                                row_kwargs=row_kwargs, mode=mode, name=entry.name)


def resolve(template, encoded: Mapping, entries: Sequence[VideoEntry], row_kwargs: Mapping, mode: str) -> list:
    """``(geometry, key, index, mismatch)`` per video whose geometry is known; each into ``VIDEO_STORE``.

    Also returns how they are known (``'encode'``, ``'handed_video'``) as the second value.
    """
    guesses = predicted(template, entries, row_kwargs, mode)
    if not any(g is not None for g in guesses):
        return [], 'encode'
    actual, basis = template.geo_family.actual_video(template, encoded, entries, guesses, mode)
    limits, name = video_limits_key(row_kwargs), template.geo_spec.name
    out = []
    for i, entry in enumerate(entries):
        geo = actual[i] if i < len(actual) else guesses[i]
        if geo is None:
            continue
        mismatch = None if geo is guesses[i] else _mismatch(geo, guesses[i], template.geo_family.video_mismatch_fields)
        if mismatch:
            warn_once(f'video-mismatch:{name}:{",".join(sorted(mismatch))}',
                      f'{entry.name}: template {name} produced {mismatch} (actual, predicted); swift-ext '
                      'reports the actual values.')
        VIDEO_STORE.put(entry.key, limits + (_axis(mode),), name, geo)
        out.append((geo, entry.key, i, mismatch))
    return out, basis


def _axis(mode: str) -> str:
    """Which time axis an encode's prompt shows: ms-swift's vLLM mode rebases Qwen3-VL's frame times."""
    return 'vllm' if mode == 'vllm' else 'source'


def store_key(row_kwargs: Any, mode: str) -> tuple:
    """The ``VIDEO_STORE`` limits part for a row's ``chat_template_kwargs`` and an encode mode."""
    return video_limits_key(row_kwargs) + (_axis(mode),)


def _mismatch(actual: VideoGeometry, guess: VideoGeometry | None, fields: tuple) -> dict | None:
    if guess is None:
        return None
    out = {}
    for field in fields:
        a, p = getattr(actual, field), getattr(guess, field)
        if a != p:
            out[field] = [a, p]
    if actual.frame_indices != guess.frame_indices and 'num_frames' not in out:
        out['frame_indices'] = [list(actual.frame_indices[:8]), list(guess.frame_indices[:8])]
    if guess.timestamps and actual.timestamps != guess.timestamps:
        out['timestamps'] = [list(actual.timestamps[:4]), list(guess.timestamps[:4])]
    return out or None
