"""The run-log contract: the files a run folder holds, their line fields, the writer and the reader.

Files in a run folder (``output_dir/v<N>-<time>/``); a rank N > 0 puts ``.rankN`` before ``.jsonl``:
- ``image_geometry.jsonl``: one line per image per encode (fields: ``image_line`` / ``failure_line``),
  written by the `_geo` templates through the recorder (``swift_ext.recorder``, which says when);
- ``image_batches.jsonl``: one event per batch: ``collate`` (the rows it holds, by the fingerprint of
  their token ids) from the process that collated it, ``consume`` (the training step that trained on
  it) from the trainer. A line with ``step`` null gets its step there (``swift_ext.steps``);
- ``geometry_settings.jsonl``: one line per template built (settings and fingerprint);
- ms-swift's ``logging.jsonl`` (per-step metrics, ``vision/`` among them) and, with
  ``--log_completions true``, ``completions.jsonl`` with the ``COMPLETION_COLUMNS`` geo_log adds.
`swift-ext review`, `check` and the callback read them through the names and readers here.

Which folder: ``SWIFT_EXT_GEO_LOG_DIR``, set by the `geo_log` callback when the trainer is built (so
processes forked later inherit it). Processes started before that (ms-swift's packing workers) learn it
through a channel file the plugin names at import (``open_channel``), read when they write.

Writing is safe from several processes: each appends to its rank's file with one ``os.write`` of whole
lines per trigger on an ``O_APPEND`` descriptor (Linux holds the inode lock for a regular-file write),
so lines from a rank's dataloader workers never interleave or tear, and a SIGKILL leaves only whole
lines. A write that fails is counted (``lost_records()``) and warned about once per cause; a log file or
folder deleted under the run is recreated (one warning) and the lines written again. Internal module.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .cache import BoundedCache
from .forksafe import Lock, after_fork_in_child
from .geometry import ImageGeometry
from .images import payload_size
from .warn import warn_once

logger = logging.getLogger(__name__)

ENV_DIR = 'SWIFT_EXT_GEO_LOG_DIR'
ENV_CHANNEL = 'SWIFT_EXT_GEO_LOG_CHANNEL'  # a file naming the run folder, for processes started before it
GEOMETRY_FILE = 'image_geometry.jsonl'
GEOMETRY_GLOB = 'image_geometry*.jsonl'
BATCHES_FILE = 'image_batches.jsonl'
SETTINGS_FILE = 'geometry_settings.jsonl'
LOGGING_FILE = 'logging.jsonl'
COMPLETIONS_FILE = 'completions.jsonl'
# Columns the geo_log callback adds to GRPO's completions table (``--log_completions true``).
COMPLETION_COLUMNS = ('geo_original_size', 'geo_resized_size', 'geo_visual_tokens', 'geo_image')
MAX_READ = 64 << 20  # bytes a tail reads per call at most; the rest waits for the next call
# Which side of a run a process is ('trainer', 'rollout', ...), for `swift-ext check`.
ENV_ROLE = 'SWIFT_EXT_ROLE'
# How a line's geometry was known: read from the encode's outputs; from the resized image the template
# handed an inference engine (vLLM), the rest derived; predicted from the size (the engine resizes).
BASES = ('encode', 'handed_image', 'prediction')


class _State:
    fds: dict = {}  # (pid, path) -> descriptor
    lock = Lock()
    lost_records = 0  # image lines this process could not make or write
    step: int | None = None  # the step in progress in the trainer (rollout lines carry it)


STATE = _State()
_PID = [os.getpid()]  # kept current by the fork hook: os.getpid() is a system call
_RANK = (None, -1)  # (pid, rank): a forked worker re-reads, its pid differs


def rank() -> int:
    global _RANK
    pid = _PID[0]
    if _RANK[0] != pid:
        _RANK = (pid, int(os.environ.get('RANK', os.environ.get('LOCAL_RANK', '0')) or 0))
    return _RANK[1]


def rank_path(log_dir: str, name: str, rank_: int | None = None) -> str:
    """``name`` in ``log_dir`` for a rank: rank 0 keeps the plain name, rank N adds `.rankN`."""
    r = rank() if rank_ is None else rank_
    return os.path.join(log_dir, name if r == 0 else name.replace('.jsonl', f'.rank{r}.jsonl'))


def geometry_path(log_dir: str, rank_: int | None = None) -> str:
    return rank_path(log_dir, GEOMETRY_FILE, rank_)


def batches_path(log_dir: str, rank_: int | None = None) -> str:
    return rank_path(log_dir, BATCHES_FILE, rank_)


def set_step(step: int | None) -> None:
    STATE.step = step


# --- which folder ----------------------------------------------------------------------------------------------
def log_dir() -> str | None:
    """The run folder image lines go to, or None (then nothing is written).

    Asked at write triggers, not per encode: a missing channel file costs one failed open.
    """
    d = os.environ.get(ENV_DIR)
    if d or not os.environ.get(ENV_CHANNEL):
        return d or None
    d = _read_channel(os.environ[ENV_CHANNEL])
    if d:
        os.environ[ENV_DIR] = d  # found once for this process and those it starts
    return d


def log_dir_pending() -> bool:
    """True in a worker process started before the run folder was named, which the channel may still name."""
    if os.environ.get(ENV_DIR) or not os.environ.get(ENV_CHANNEL):
        return False
    if _IS_CHILD[0] != _PID[0]:
        import multiprocessing
        _IS_CHILD[:] = [_PID[0], multiprocessing.parent_process() is not None]
    return _IS_CHILD[1]


_IS_CHILD = [None, False]  # (pid, whether it is a multiprocessing child)


def open_channel() -> None:
    """Name (not create) this process's channel file, for the worker processes it starts from now on.

    A multiprocessing child keeps the channel it inherited (its parent's); any other process names
    its own, so a `swift` command started from a process that had one does not read that one.
    """
    import multiprocessing
    if multiprocessing.parent_process() is not None and os.environ.get(ENV_CHANNEL):
        return
    name = f'swift-ext-geo-log-{os.getpid()}-{secrets.token_hex(8)}'
    os.environ[ENV_CHANNEL] = os.path.join(tempfile.gettempdir(), name)


def publish_log_dir(directory: str) -> None:
    """Make ``directory`` the run folder of this process, of those it starts, and of those on the channel."""
    os.environ[ENV_DIR] = directory
    channel = os.environ.get(ENV_CHANNEL)
    if not channel:
        return
    tmp = f'{channel}.{os.getpid()}.tmp'
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(directory)
        os.replace(tmp, channel)  # replaces a link itself, never writes through one
    except OSError as exc:
        warn_once('channel', f'swift-ext could not tell worker processes started before the trainer where '
                  f'the geometry log goes ({exc}); their lines are not logged.')
        return
    import atexit
    atexit.register(_remove, channel, os.getpid())


def _remove(path: str, pid: int) -> None:
    if os.getpid() == pid:
        try:
            os.unlink(path)
        except OSError:
            pass


def _read_channel(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, 'rb') as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():  # only a file this user wrote
            return None
        data = f.read(4097)
    text = data.decode('utf-8', 'replace').strip()
    return text if 0 < len(text) <= 4096 and os.path.isabs(text) else None


# --- lines -----------------------------------------------------------------------------------------------------
_dumps = json.JSONEncoder(separators=(',', ':')).encode  # json.dumps(..., separators=(',', ':'))
# A key is an absolute path, a URL or `sha1:<hex>` (swift_ext.images); a path this long is not
# plausible, and a line must stay short whatever the key holds.
MAX_KEY_CHARS = 4096
MAX_ERROR_CHARS = 500


def _mode(template_mode: str) -> str:
    return 'rollout' if template_mode in ('transformers', 'vllm', 'lmdeploy', 'sglang') else 'train'


def image_line(*, geometry: ImageGeometry, key: str, image_index: int, mode: str, template: str,
               clamped: str | None, mismatch: dict | None, sample_id: str, step: Any = None,
               basis: str = 'encode', row: str | None = None, batch: str | None = None, encode: int = 0,
               when: float | None = None) -> dict:
    """The fields of one image line, in order (``ImageLines.render`` writes the same, faster)."""
    head = {'step': step, 'rank': rank(), 'pid': _PID[0], 'mode': _mode(mode), 'sample_id': sample_id,
            'image_index': image_index, 'image': _short_key(key), 'template': template}
    _add_payload_size(head, key)
    return {**head, **geometry.to_dict(), 'clamped': clamped, 'mismatch': mismatch, 'error': None,
            'basis': basis, 'row': row, 'batch': batch, 'encode': encode,
            'time': time.time() if when is None else when}


def failure_line(*, key: str, image_index: int, mode: str, template: str, error: str, sample_id: str,
                 step: Any = None, batch: str | None = None, when: float | None = None) -> dict:
    line = {'step': step, 'rank': rank(), 'pid': _PID[0], 'mode': _mode(mode), 'sample_id': sample_id,
            'image_index': image_index, 'image': _short_key(key), 'template': template,
            'error': error[:MAX_ERROR_CHARS], 'batch': batch, 'time': time.time() if when is None else when}
    _add_payload_size(line, key)
    return line


class ImageLines:
    """An encode's image lines, made when written (the step and batch are known then).

    ``images``: ``(geometry, key, image_index, clamped, mismatch)`` each.
    """

    __slots__ = ('mode', 'template', 'sample_id', 'images', 'basis', 'when', 'count')

    def __init__(self, *, mode: str, template: str, sample_id, images: Sequence[tuple], basis: str, when: float):
        self.mode, self.template, self.sample_id, self.images = mode, template, sample_id, images
        self.basis, self.when, self.count = basis, when, len(images)

    def render(self, *, step: Any, batch: str | None, row: str | None, encode: int) -> str:
        """The lines, each ``image_line(...)`` field for field; shared fields encoded once, per process."""
        common = f'{_prefix_json(step, self.mode)}{_dumps(self.sample_id())},"image_index":'
        stamp = repr(self.when) if type(self.when) is float else _dumps(self.when)  # json writes a float's repr
        after = (f'"error":null,"basis":{_dumps(self.basis)},"row":{_dumps(row)},"batch":{_dumps(batch)},'
                 f'"encode":{int(encode)},"time":{stamp}}}\n')
        return ''.join(f'{common}{i},{_source_json(key, self.template)},{_geometry_json(geo)},'
                       f'"clamped":{"null" if clamped is None else _dumps(clamped)},'
                       f'"mismatch":{"null" if mismatch is None else _dumps(mismatch)},{after}'
                       for geo, key, i, clamped, mismatch in self.images)


class FailureLines:
    """A failed encode's lines: one per image at fault, ``(key, image_index)`` each."""

    __slots__ = ('mode', 'template', 'sample_id', 'images', 'error', 'when', 'count')

    def __init__(self, *, mode: str, template: str, sample_id: str, images: Sequence[tuple], error: str):
        self.mode, self.template, self.sample_id, self.images = mode, template, sample_id, images
        self.error, self.when, self.count = error, time.time(), len(images)

    def render(self, *, step: Any, batch: str | None, row: str | None = None, encode: int = 0) -> str:
        return ''.join(_dumps(failure_line(key=key, image_index=i, mode=self.mode, template=self.template,
                                           error=self.error, sample_id=self.sample_id, step=step,
                                           batch=batch, when=self.when)) + '\n'
                       for key, i in self.images)


def collate_event(batch: str, rows: Sequence[str]) -> dict:
    return {'event': 'collate', 'batch': batch, 'rows': list(rows), 'rank': rank(), 'pid': _PID[0],
            'time': time.time()}


def consume_event(batch: str, step: Any) -> dict:
    return {'event': 'consume', 'batch': batch, 'step': step, 'rank': rank(), 'pid': _PID[0], 'time': time.time()}


# Geometry objects are shared (a template remembers its predictions), so their JSON is too:
# id -> (geometry, fields as a JSON fragment); the geometry is held so its id stays its own.
_GEOMETRY_JSON = BoundedCache()
_PREFIX_JSON = BoundedCache()
_SOURCE_JSON = BoundedCache()


def _geometry_json(geometry: ImageGeometry) -> str:
    hit = _GEOMETRY_JSON.get(id(geometry))
    if hit is not None and hit[0] is geometry:
        return hit[1]
    fragment = _dumps(geometry.to_dict())[1:-1]
    _GEOMETRY_JSON[id(geometry)] = (geometry, fragment)
    return fragment


def _prefix_json(step: Any, mode: str) -> str:
    """``{"step":...,"rank":...,"pid":...,"mode":...,"sample_id":`` of a line, remembered."""
    key = (_PID[0], type(step), step, mode)  # the type too: True == 1 as a key
    try:
        hit = _PREFIX_JSON.get(key)
    except TypeError:  # a step that does not hash
        key, hit = None, None
    if hit is None:
        hit = _dumps({'step': step, 'rank': rank(), 'pid': _PID[0], 'mode': _mode(mode)})[:-1] + ',"sample_id":'
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


# --- the writer ------------------------------------------------------------------------------------------------
def write(directory: str, text: str, images: int, events: Sequence[dict] = ()) -> None:
    """Append ``text`` (whole image lines) to this rank's geometry file, then ``events`` to its batch log.

    Never raises: a failed write is counted and warned about.
    """
    if text:
        path = geometry_path(directory)
        try:
            append_data(path, text.encode('utf-8', 'backslashreplace'))
        except OSError as exc:
            _count_failure(path, exc, images)
    if events:
        path = batches_path(directory)
        try:
            append_lines(path, events)
        except OSError as exc:
            _count_failure(path, exc, 0)
        except (TypeError, ValueError) as exc:  # an event that is not JSON: a bug, but never a crash
            _count_failure(path, OSError(errno.EINVAL, f'unserialisable event ({exc})'), 0)


def append_lines(path: str, records: Iterable[dict]) -> None:
    """Append records as JSON lines with a single write. Raises OSError when writing fails."""
    append_data(path, ''.join(_dumps(r) + '\n' for r in records).encode())


def append_data(path: str, data: bytes) -> None:
    """One ``os.write`` of ``data`` on this process's O_APPEND descriptor of ``path``.

    Where the file was deleted (its folder removed) since it was opened, it is recreated and the
    data written again, with one warning. Raises OSError when writing fails.
    """
    if not data:
        return
    with STATE.lock:
        fd = _fd(path)
        try:
            os.write(fd, data)
            if os.fstat(fd).st_nlink > 0:
                return
        except OSError:
            _forget(path)
            raise
        # The inode has no name left: the file or its folder was deleted under the run.
        _forget(path)
        os.write(_fd(path), data)
    warn_once('runlog:recreated', f'swift-ext: {path} was deleted while the run wrote to it; recreated it '
              '(lines written before the deletion are gone with the old file).')


def _fd(path: str) -> int:
    key = (_PID[0], path)
    fd = STATE.fds.get(key)
    if fd is None:
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        STATE.fds[key] = fd
    return fd


def _forget(path: str) -> None:
    fd = STATE.fds.pop((_PID[0], path), None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _count_failure(path: str, exc: OSError, images: int) -> None:
    count_lost(images)
    cause = errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__
    warn_once(f'runlog:write:{cause}', f'swift-ext could not write {path} ({exc.strerror or exc}); {images} '
              'image line(s) lost. Training continues; further failures of this kind are counted '
              '(runlog.lost_records()), not logged.')


def count_lost(images: int) -> None:
    """Count image lines this process could not make or write (the geo_log callback reads the count)."""
    STATE.lost_records += images


def lost_records() -> int:
    """How many image lines this process could not make or write since it started (or was forked)."""
    return STATE.lost_records


@after_fork_in_child
def _after_fork_in_child() -> None:
    # The parent's descriptors are closed (the child opens its own, keyed by its pid).
    _PID[0] = os.getpid()
    for key in [k for k in STATE.fds if k[0] != _PID[0]]:
        try:
            os.close(STATE.fds.pop(key))
        except OSError:
            pass
    STATE.lost_records = 0


def role() -> str:
    """This process's side of the run, from ``SWIFT_EXT_ROLE`` (default 'trainer')."""
    return os.environ.get(ENV_ROLE) or 'trainer'


def log_settings(settings) -> None:
    """Log a template's effective settings and fingerprint (and write them to the run).

    The log line ends with the settings as JSON, so `swift-ext check` can read them back
    from a captured log.
    """
    fingerprint = settings.fingerprint()
    _settings_logger().info(
        'swift-ext %s preprocessing fingerprint %s (role %s, rank %d, pid %d): %s',
        settings.template, fingerprint, role(), rank(), os.getpid(),
        json.dumps(settings.to_dict(), sort_keys=True))
    d = log_dir()
    if d:
        try:
            append_lines(os.path.join(d, SETTINGS_FILE), [{
                'role': role(), 'rank': rank(),
                'pid': os.getpid(), 'fingerprint': fingerprint,
                'settings': settings.to_dict(), 'time': time.time()}])
        except OSError as exc:
            _count_failure(os.path.join(d, SETTINGS_FILE), exc, 0)


def _settings_logger() -> logging.Logger:
    """This module's logger, or ms-swift's where only ms-swift's prints anything.

    Under `swift sft` / `rlhf` / `rollout` nothing configures the root logger, so an INFO
    line from `swift_ext` would be dropped; ms-swift's own logger prints it.
    """
    if logger.hasHandlers():
        return logger
    swift_logger = logging.getLogger('swift')
    return swift_logger if swift_logger.handlers else logger


class GeoFileTail:
    """Reads the complete JSON lines appended to a file since the previous call.

    A last line without its newline (a write in progress) is left for the next call. A file
    replaced by another (a new inode, or the same inode number reused with other first bytes:
    deleted and recreated) or truncated is read from its start; ``missing`` is True while a file
    that existed is gone (records may be lost).
    """

    HEAD = 256  # first bytes remembered to tell a recreated file that reuses the inode number

    def __init__(self, path: str, *, from_end: bool = False):
        self.path = path
        self.offset = 0
        self.bad_lines = 0
        self.missing = False
        self._seen = False
        self._inode = None
        self._head = b''
        if from_end:
            try:
                with open(path, 'rb') as f:
                    st = os.fstat(f.fileno())
                    self._remember(f, st)
                    self.offset = st.st_size
            except OSError:
                pass

    def _remember(self, f, st) -> None:
        self._seen, self._inode = True, st.st_ino
        f.seek(0)
        self._head = f.read(self.HEAD)

    def read_new(self) -> list[dict]:
        try:
            f = open(self.path, 'rb')
        except FileNotFoundError:  # other errors (a directory in its place) are the caller's to report
            self.missing = self._seen
            return []
        with f:
            self.missing = False
            st = os.fstat(f.fileno())
            if self.offset and (st.st_ino != self._inode or st.st_size < self.offset
                                or f.read(len(self._head)) != self._head):
                self.offset = 0  # replaced or truncated: start over
            size = st.st_size
            if size == self.offset:
                return []
            if self.offset == 0:
                self._remember(f, st)
            f.seek(self.offset)
            data = f.read(min(size - self.offset, MAX_READ))
        end = data.rfind(b'\n')
        if end < 0:
            return []
        self.offset += end + 1
        records = []
        for line in data[:end].split(b'\n'):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                self.bad_lines += 1
        return records
