"""The lines of image_geometry.jsonl and the events of image_batches.jsonl, built as the run-log contract
(``swift_ext.runlog``: ``RECORD_HEAD``, the geometry's fields, ``RECORD_TAIL``; a video's ``VIDEO_HEAD``,
its geometry, ``VIDEO_TAIL``) says, field for field.

``image_line`` / ``video_line`` / ``failure_line`` are the reference; ``ImageLines.render`` writes the same
text fast, the way the recorder needs it: an encode's lines are made when they are written (their step and
batch are known then), and the parts a run repeats (a step's prefix, an image's name, a shared geometry)
are encoded once.
Internal module.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from .cache import BoundedCache
from .geometry import ImageGeometry, VideoGeometry
from .images import payload_size
from .runlog import MAX_ERROR_CHARS, MAX_KEY_CHARS, process_id, rank

_dumps = json.JSONEncoder(separators=(',', ':')).encode  # json.dumps(..., separators=(',', ':'))


def _mode(template_mode: str) -> str:
    return 'rollout' if template_mode in ('transformers', 'vllm', 'lmdeploy', 'sglang') else 'train'


def image_line(*, geometry: ImageGeometry, key: str, image_index: int, mode: str, template: str,
               clamped: str | None, mismatch: dict | None, sample_id: str, step: Any = None,
               basis: str = 'encode', row: str | None = None, batch: str | None = None, encode: int = 0,
               when: float | None = None) -> dict:
    """The fields of one image line, in order (``ImageLines.render`` writes the same, faster)."""
    head = {'step': step, 'rank': rank(), 'pid': process_id(), 'mode': _mode(mode), 'sample_id': sample_id,
            'image_index': image_index, 'image': _short_key(key), 'template': template}
    _add_payload_size(head, key)
    return {**head, **geometry.to_dict(), 'clamped': clamped, 'mismatch': mismatch, 'error': None,
            'basis': basis, 'row': row, 'batch': batch, 'encode': encode,
            'time': time.time() if when is None else when}


def video_line(*, geometry: VideoGeometry, key: str, video_index: int, mode: str, template: str,
               mismatch: dict | None, sample_id: str, step: Any = None, basis: str = 'encode',
               row: str | None = None, batch: str | None = None, encode: int = 0, when: float | None = None) -> dict:
    """The fields of one video line, in order (``ImageLines.render`` writes the same, faster)."""
    head = {'step': step, 'rank': rank(), 'pid': process_id(), 'mode': _mode(mode), 'sample_id': sample_id,
            'kind': 'video', 'video_index': video_index, 'video': _short_key(key), 'template': template}
    _add_payload_size(head, key)
    return {**head, **geometry.to_dict(), 'mismatch': mismatch, 'error': None, 'basis': basis, 'row': row,
            'batch': batch, 'encode': encode, 'time': time.time() if when is None else when}


def failure_line(*, key: str, image_index: int, mode: str, template: str, error: str, sample_id: str,
                 step: Any = None, batch: str | None = None, when: float | None = None, kind: str = 'image') -> dict:
    """A failed encode's line for one image (``kind='image'``) or video (``'video'``: ``video_index`` / ``video``)."""
    line = {'step': step, 'rank': rank(), 'pid': process_id(), 'mode': _mode(mode), 'sample_id': sample_id}
    if kind == 'video':
        line.update(kind='video', video_index=image_index, video=_short_key(key))
    else:
        line.update(image_index=image_index, image=_short_key(key))
    line.update(template=template, error=error[:MAX_ERROR_CHARS], batch=batch,
                time=time.time() if when is None else when)
    _add_payload_size(line, key)
    return line


class ImageLines:
    """An encode's image lines, then its video lines, made when written (the step and batch are known then).

    ``images``: ``(geometry, key, image_index, clamped, mismatch)`` each; ``videos``: ``(geometry, key,
    video_index, mismatch)`` each, known as ``video_basis``.
    """

    __slots__ = ('mode', 'template', 'sample_id', 'images', 'basis', 'when', 'count', 'videos', 'video_basis')

    def __init__(self, *, mode: str, template: str, sample_id, images: Sequence[tuple], basis: str, when: float,
                 videos: Sequence[tuple] = (), video_basis: str = 'encode'):
        self.mode, self.template, self.sample_id, self.images = mode, template, sample_id, images
        self.basis, self.when, self.count = basis, when, len(images) + len(videos)
        self.videos, self.video_basis = videos, video_basis

    def render(self, *, step: Any, batch: str | None, row: str | None, encode: int) -> str:
        """The lines, each ``image_line(...)`` field for field; shared fields encoded once, per process."""
        common = f'{_prefix_json(step, self.mode)}{_dumps(self.sample_id())},"image_index":'
        stamp = repr(self.when) if type(self.when) is float else _dumps(self.when)  # json writes a float's repr
        after = (f'"error":null,"basis":{_json_word(self.basis)},"row":{_json_name(row)},'
                 f'"batch":{_json_name(batch)},"encode":{int(encode)},"time":{stamp}}}\n')
        text = ''.join(f'{common}{i},{_source_json(key, self.template)},{_geometry_json(geo)},'
                       f'"clamped":{_json_word(clamped)},'
                       f'"mismatch":{"null" if mismatch is None else _dumps(mismatch)},{after}'
                       for geo, key, i, clamped, mismatch in self.images)
        if not self.videos:
            return text
        sample = self.sample_id()
        return text + ''.join(_dumps(video_line(geometry=geo, key=key, video_index=i, mode=self.mode,
                                                template=self.template, mismatch=mismatch, sample_id=sample,
                                                step=step, basis=self.video_basis, row=row, batch=batch,
                                                encode=encode, when=self.when)) + '\n'
                              for geo, key, i, mismatch in self.videos)


class FailureLines:
    """A failed encode's lines: one per image (or video, ``kind='video'``) at fault, ``(key, index)`` each."""

    __slots__ = ('mode', 'template', 'sample_id', 'images', 'error', 'when', 'count', 'kind')

    def __init__(self, *, mode: str, template: str, sample_id: str, images: Sequence[tuple], error: str,
                 kind: str = 'image'):
        self.mode, self.template, self.sample_id, self.images = mode, template, sample_id, images
        self.error, self.when, self.count, self.kind = error, time.time(), len(images), kind

    def render(self, *, step: Any, batch: str | None, row: str | None = None, encode: int = 0) -> str:
        return ''.join(_dumps(failure_line(key=key, image_index=i, mode=self.mode, template=self.template,
                                           error=self.error, sample_id=self.sample_id, step=step,
                                           batch=batch, when=self.when, kind=self.kind)) + '\n'
                       for key, i in self.images)


def collate_event(batch: str, rows: Sequence[str]) -> dict:
    return {'event': 'collate', 'batch': batch, 'rows': list(rows), 'rank': rank(), 'pid': process_id(),
            'time': time.time()}


def consume_event(batch: str, step: Any) -> dict:
    return {'event': 'consume', 'batch': batch, 'step': step, 'rank': rank(), 'pid': process_id(), 'time': time.time()}


# Geometry objects are shared (a template remembers its predictions), so their JSON is too:
# id -> (geometry, fields as a JSON fragment); the geometry is held so its id stays its own.
_GEOMETRY_JSON = BoundedCache()
_PREFIX_JSON = BoundedCache()
_SOURCE_JSON = BoundedCache()


_WORD_JSON = BoundedCache(1024)


def _json_word(value: Any) -> str:
    """``_dumps(value)`` of a short value a run repeats (a basis, a clamp name), remembered."""
    if value is None:
        return 'null'
    key = (type(value), value)  # the type too: True == 1 as a key
    hit = _WORD_JSON.get(key)
    if hit is None:
        hit = _WORD_JSON[key] = _dumps(value)
    return hit


def _json_name(value: Any) -> str:
    """``_dumps(value)`` of a row or batch name: ours are hex digits and '-', written as they are."""
    if value is None:
        return 'null'
    if type(value) is str and value.isascii() and value.replace('-', '').isalnum():
        return f'"{value}"'
    return _dumps(value)


def _geometry_json(geometry: ImageGeometry) -> str:
    hit = _GEOMETRY_JSON.get(id(geometry))
    if hit is not None and hit[0] is geometry:
        return hit[1]
    fragment = _dumps(geometry.to_dict())[1:-1]
    _GEOMETRY_JSON[id(geometry)] = (geometry, fragment)
    return fragment


def _prefix_json(step: Any, mode: str) -> str:
    """``{"step":...,"rank":...,"pid":...,"mode":...,"sample_id":`` of a line, remembered."""
    key = (process_id(), type(step), step, mode)  # the type too: True == 1 as a key
    try:
        hit = _PREFIX_JSON.get(key)
    except TypeError:  # a step that does not hash
        key, hit = None, None
    if hit is None:
        hit = _dumps({'step': step, 'rank': rank(), 'pid': process_id(), 'mode': _mode(mode)})[:-1] + ',"sample_id":'
        if key is not None:
            _PREFIX_JSON[key] = hit
    return hit


def _source_json(key: str, template: str) -> str:
    """``"image":...,"template":...`` (and ``"image_bytes":...``) of a line, remembered."""
    hit = _SOURCE_JSON.get((key, template))
    if hit is None:
        rec = {'image': _short_key(key), 'template': template}
        _add_payload_size(rec, key)
        hit = _SOURCE_JSON[(key, template)] = _dumps(rec)[1:-1]
    return hit


def _short_key(key: str) -> str:
    key = str(key)
    return key if len(key) <= MAX_KEY_CHARS else key[:MAX_KEY_CHARS // 2] + f'...[{len(key)} chars]'


def _add_payload_size(rec: dict, key: str) -> None:
    """``image_bytes``: the decoded payload size of an in-memory image (its key is its sha1)."""
    if isinstance(key, str) and key.startswith('sha1:'):
        rec['image_bytes'] = payload_size(key)


