"""The run-log contract: the files a run folder holds, their record fields, the writer and the reader.

Files in a run folder (``output_dir/v<N>-<time>/``):
- ``image_geometry.jsonl`` (rank N > 0: ``image_geometry.rankN.jsonl``): one line per image
  encode, written by the `_geo` templates (``image_record`` / ``failure_record`` fields);
- ``geometry_settings.jsonl``: one line per template built (settings and fingerprint);
- ms-swift's ``logging.jsonl`` (per-step metrics, ``vision/`` among them) and, with
  ``--log_completions true``, ``completions.jsonl`` with the ``COMPLETION_COLUMNS`` the
  `geo_log` callback adds.
`swift-ext review`, `check` and the callback read them through the names and reader here.

Writing is safe from several processes. The `geo_log` callback points this module at the run's
output directory (through the environment, so dataloader workers started later inherit it). Each process appends to its
rank's file with one ``os.write`` per batch of complete lines on an ``O_APPEND``
descriptor: Linux holds the inode lock for a regular-file write, so lines from a rank's
dataloader workers never interleave or tear, and a SIGKILL leaves only whole lines behind
(missing are the one write in flight and the image records still queued, see ``queue_images``).

Failures never stop training and are never silent: a write that fails is counted
(``lost_records()``) and warned about once per cause; a log file or folder deleted while the
run writes to it is recreated (one warning) and the batch written again. A process forked
while another thread holds the writer's lock gets a fresh lock, so the child cannot deadlock.
"""
from __future__ import annotations

import errno
import json
import logging
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from . import deferred
from .geometry import ImageGeometry
from .images import payload_size

logger = logging.getLogger(__name__)

ENV_DIR = 'SWIFT_EXT_GEO_LOG_DIR'
GEOMETRY_FILE = 'image_geometry.jsonl'
GEOMETRY_GLOB = 'image_geometry*.jsonl'
SETTINGS_FILE = 'geometry_settings.jsonl'
LOGGING_FILE = 'logging.jsonl'
COMPLETIONS_FILE = 'completions.jsonl'
# Columns the geo_log callback adds to GRPO's completions table (``--log_completions true``).
COMPLETION_COLUMNS = ('geo_original_size', 'geo_resized_size', 'geo_visual_tokens', 'geo_image')
MAX_READ = 64 << 20  # bytes a tail reads per call at most; the rest waits for the next call
# Which side of a run a process is ('trainer', 'rollout', ...), for `swift-ext check`.
ENV_ROLE = 'SWIFT_EXT_ROLE'

# --- the line contract: fields and limits, shared by the writer and every reader ------------------------
# An encode's image_geometry line holds RECORD_HEAD, the ``ImageGeometry.to_dict()`` fields and
# RECORD_TAIL; a failure's, RECORD_HEAD and FAILURE_TAIL; either adds PAYLOAD_FIELD for an in-memory
# image (its decoded size). Readers (`review`, the callback) read these names and no others.
RECORD_HEAD = ('step', 'rank', 'pid', 'mode', 'sample_id', 'image_index', 'image', 'template')
RECORD_TAIL = ('clamped', 'mismatch', 'error', 'time')
FAILURE_TAIL = ('error', 'time')
PAYLOAD_FIELD = 'image_bytes'
MODES = ('train', 'rollout')  # a record's ``mode``: an encode for training, or for generating rollouts
# A key is an absolute path, a URL or `sha1:<hex>` (swift_ext.images); a path this long is not
# plausible, and a line must stay short whatever the key holds.
MAX_KEY_CHARS = 4096
MAX_ERROR_CHARS = 500  # a failure's error text is cut here
# Lines readers take whole; a longer line is skipped and reported. Ours (geometry, settings) stay near
# 1 KB, so 1 MiB is far past any real one; ms-swift's own files hold whole tables and prompts.
MAX_GEO_LINE = 1 << 20  # image_geometry*.jsonl, geometry_settings.jsonl
MAX_LOG_LINE = 32 << 20  # logging.jsonl
MAX_COMPLETIONS_LINE = 64 << 20  # completions.jsonl
MAX_ARGS_BYTES = 4 << 20  # args.json


def geometry_records(lines: Iterable[tuple[int, bytes]], *, decode: Callable[[bytes], Any] = json.loads,
                     errors: tuple = (ValueError, RecursionError),
                     bad: Callable[[int, bytes], None] | None = None) -> Iterator[tuple[int, Any]]:
    """``(line number, record)`` for image_geometry lines ``(line number, bytes)``, in order.

    Every reader of image_geometry*.jsonl (the callback's tail, `review`, its gallery) goes through
    here, so what a line means is decided in one place. A line ``decode`` refuses is handed to
    ``bad`` and skipped.
    """
    for number, line in lines:
        try:
            record = decode(line)
        except errors:
            if bad is not None:
                bad(number, line)
            continue
        yield number, record


class _State:
    fds: dict = {}
    lock = threading.Lock()
    lost_records = 0  # records this process could not write
    failed_writes = 0
    warned: set = set()  # causes already warned about (errno names, 'recreated')
    _step: int | None = None
    _shared = None  # an 8-byte shared mapping once share_step() ran (see there)

    @property
    def step(self) -> int | None:
        if self._shared is not None:
            value = struct.unpack('q', self._shared[:8])[0]
            return None if value < 0 else value
        return self._step

    @step.setter
    def step(self, value: int | None) -> None:
        self._step = value
        if self._shared is not None:
            self._shared[:8] = struct.pack('q', -1 if value is None else int(value))


STATE = _State()


_RANK = (None, -1)  # (pid, rank): a forked worker re-reads, its pid differs
# This process's id, kept current by the fork hook below: os.getpid() is a system call each time.
_PID = [os.getpid()]


def rank() -> int:
    global _RANK
    pid = _PID[0]
    if _RANK[0] != pid:
        _RANK = (pid, int(os.environ.get('RANK', os.environ.get('LOCAL_RANK', '0')) or 0))
    return _RANK[1]


def geometry_path(log_dir: str, rank_: int | None = None) -> str:
    """The geometry file of a rank: rank 0 keeps the plain name, rank N adds `.rankN`."""
    r = rank() if rank_ is None else rank_
    name = GEOMETRY_FILE if r == 0 else GEOMETRY_FILE.replace('.jsonl', f'.rank{r}.jsonl')
    return os.path.join(log_dir, name)


def log_dir() -> str | None:
    return os.environ.get(ENV_DIR) or None


def record_context() -> tuple | None:
    """``(run directory, step, time)`` now, for records made later; None without a run directory."""
    d = os.environ.get(ENV_DIR)
    return (d, STATE.step, time.time()) if d else None


def set_step(step: int | None) -> None:
    STATE.step = step


def share_step() -> None:
    """Let processes forked from now on (dataloader workers) see later ``set_step`` calls.

    The step moves to an anonymous shared memory page, which a fork inherits as shared;
    without this a worker keeps the step it had when it was forked. (Processes started
    with 'spawn' still do not see it.) A batch a worker prefetches carries the step in
    progress when it was encoded, which can be a step or two before the one it trains.
    """
    if STATE._shared is None:
        step = STATE.step
        STATE._shared = mmap.mmap(-1, 8)
        STATE.step = step


_NOW = object()  # image_record's default step / time: the current ones


def image_record(*, geometry: ImageGeometry, key: str, image_index: int, mode: str,
                 template: str, clamped: str | None, mismatch: dict | None,
                 sample_id: str, step: Any = _NOW, when: float | None = None) -> dict:
    head = {'step': STATE.step if step is _NOW else step, 'rank': rank(), 'pid': _PID[0], 'mode': _mode(mode),
            'sample_id': sample_id, 'image_index': image_index, 'image': _short_key(key), 'template': template}
    _add_payload_size(head, key)
    return {**head, **geometry.to_dict(), 'clamped': clamped, 'mismatch': mismatch, 'error': None,
            'time': time.time() if when is None else when}


_dumps = json.JSONEncoder(separators=(',', ':')).encode  # json.dumps(..., separators=(',', ':'))
# Geometry objects are shared (a template remembers its predictions), so their JSON is too:
# id -> (geometry, fields as a JSON fragment); the geometry is held so its id stays its own.
_GEOMETRY_JSON: dict = {}


def _geometry_json(geometry: ImageGeometry) -> str:
    hit = _GEOMETRY_JSON.get(id(geometry))
    if hit is not None and hit[0] is geometry:
        return hit[1]
    fragment = _dumps(geometry.to_dict())[1:-1]
    if len(_GEOMETRY_JSON) >= 4096:
        _GEOMETRY_JSON.clear()
    _GEOMETRY_JSON[id(geometry)] = (geometry, fragment)
    return fragment


def _encode_lines(step: Any, when: float, mode: str, template: str, sample_id: str, images: Sequence[tuple]) -> list:
    """One encode's image records as JSON lines, each ``image_record(...)`` field for field.

    The fields an encode's images share are encoded once, and the fields before the sample id,
    an image's name and a geometry once per process (the same steps, files and sizes come back).
    """
    common = f'{_prefix_json(step, mode)}{_dumps(sample_id)},"image_index":'
    stamp = repr(when) if type(when) is float else _dumps(when)  # json writes a float as its repr
    return [f'{common}{i},{_source_json(key, template)},{_geometry_json(geo)},'
            f'"clamped":{"null" if clamped is None else _dumps(clamped)},'
            f'"mismatch":{"null" if mismatch is None else _dumps(mismatch)},"error":null,"time":{stamp}}}\n'
            for geo, key, i, clamped, mismatch in images]


_PREFIX_JSON: dict = {}


def _prefix_json(step: Any, mode: str) -> str:
    """``{"step":...,"rank":...,"pid":...,"mode":...,"sample_id":`` of a record, remembered."""
    key = (_PID[0], type(step), step, mode)  # the type too: True == 1 as a key
    try:
        hit = _PREFIX_JSON.get(key)
    except TypeError:  # a step that does not hash
        key, hit = None, None
    if hit is None:
        hit = _dumps({'step': step, 'rank': rank(), 'pid': _PID[0], 'mode': _mode(mode)})[:-1] + ',"sample_id":'
        if key is not None:
            if len(_PREFIX_JSON) >= 4096:
                _PREFIX_JSON.clear()
            _PREFIX_JSON[key] = hit
    return hit


_SOURCE_JSON: dict = {}


def _source_json(key: str, template: str) -> str:
    """``"image":...,"template":...`` (and ``"image_bytes":...``) of a record, remembered."""
    hit = _SOURCE_JSON.get((key, template))
    if hit is None:
        rec = {'image': _short_key(key), 'template': template}
        _add_payload_size(rec, key)
        if len(_SOURCE_JSON) >= 4096:
            _SOURCE_JSON.clear()
        hit = _SOURCE_JSON[(key, template)] = _dumps(rec)[1:-1]
    return hit


def failure_record(*, key: str, image_index: int, mode: str, template: str, error: str,
                   sample_id: str) -> dict:
    rec = {'step': STATE.step, 'rank': rank(), 'pid': os.getpid(), 'mode': _mode(mode),
           'sample_id': sample_id, 'image_index': image_index, 'image': _short_key(key),
           'template': template, 'error': error[:MAX_ERROR_CHARS], 'time': time.time()}
    _add_payload_size(rec, key)
    return rec


def _short_key(key: str) -> str:
    key = str(key)
    return key if len(key) <= MAX_KEY_CHARS else key[:MAX_KEY_CHARS // 2] + f'...[{len(key)} chars]'


def _add_payload_size(rec: dict, key: str) -> None:
    """``image_bytes``: the decoded payload size of an in-memory image (its key is its sha1)."""
    if isinstance(key, str) and key.startswith('sha1:'):
        rec['image_bytes'] = payload_size(key)


def _mode(template_mode: str) -> str:
    return {'transformers': 'rollout', 'vllm': 'rollout', 'lmdeploy': 'rollout',
            'sglang': 'rollout'}.get(template_mode, 'train')


def append_lines(path: str, records: Iterable[dict]) -> None:
    """Append records as JSON lines with a single write on an O_APPEND descriptor.

    Where the file was deleted (its folder removed) since it was opened, it is recreated and
    the lines written again, with one warning. Raises OSError when writing fails.
    """
    _append_data(path, ''.join(_dumps(r) + '\n' for r in records).encode())


def _append_data(path: str, data: bytes) -> None:
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
    _warn('recreated', f'swift-ext: {path} was deleted while the run wrote to it; recreated it '
          '(lines written before the deletion are gone with the old file).')


def _fd(path: str) -> int:
    key = (os.getpid(), path)
    fd = STATE.fds.get(key)
    if fd is None:
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        STATE.fds[key] = fd
    return fd


def _forget(path: str) -> None:
    fd = STATE.fds.pop((os.getpid(), path), None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _warn(cause: str, message: str) -> None:
    """Log ``message`` the first time ``cause`` is seen in this process (no lock shared with a fork)."""
    if cause in STATE.warned:
        return
    STATE.warned.add(cause)
    logger.warning(message)


def _count_failure(path: str, exc: OSError, records: int) -> None:
    STATE.lost_records += records
    STATE.failed_writes += 1
    cause = errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__
    _warn(f'write:{cause}', f'swift-ext could not write {path} ({exc.strerror or exc}); {records} '
          'geometry record(s) lost. Training continues; further failures of this kind are counted '
          '(runlog.lost_records()), not logged.')


def lost_records() -> int:
    """How many records this process could not write since it started (or was forked)."""
    return STATE.lost_records


def emit(records: list) -> None:
    """Write records to this rank's geometry file now (after the queued ones), if a run directory is configured.

    Never raises.
    """
    d = log_dir()
    if not d or not records:
        return
    flush()
    _write(geometry_path(d), records)


def _write(path: str, records: list) -> None:
    try:
        append_lines(path, records)
    except OSError as exc:
        _count_failure(path, exc, len(records))
    except (TypeError, ValueError) as exc:  # a record that is not JSON: a bug, but never a crash
        _count_failure(path, OSError(errno.EINVAL, f'unserialisable record ({exc})'), len(records))


# --- queued image records -------------------------------------------------------------------------------------
# An encode's image records wait in memory and are built and written in batches: right after an
# encode the CPU caches hold the pixels, and formatting and writing a record there costs several
# times what it costs in a batch. A batch goes out when the `_geo` template collates a batch of
# samples (in the process that encoded them), at every training step's end (the geo_log
# callback), when it holds FLUSH_RECORDS images, when its oldest record is FLUSH_SECONDS old at
# the next encode, before any other record is written, and when the process exits normally. A
# SIGKILL loses what was queued: the records of a batch still being encoded.
FLUSH_RECORDS = 256
FLUSH_SECONDS = 1.0


class _Queue:
    def __init__(self):
        self.pid = _PID[0]
        self.lock = threading.Lock()
        self.items: list = []
        self.images = 0
        self.since = 0.0
        import multiprocessing.util  # a multiprocessing child (a dataloader worker) runs no atexit
        multiprocessing.util.Finalize(self, flush, exitpriority=100)


_QUEUE: _Queue | None = None


def _queue() -> _Queue:
    global _QUEUE
    q = _QUEUE
    if q is None or q.pid != _PID[0]:  # a forked child starts empty: its parent writes what it queued
        q = _QUEUE = _Queue()
    return q


def queue_images(images: Sequence[tuple], *, mode: str, template: str, sample_id: Callable[[], str],
                 context: tuple | None = None) -> None:
    """Queue one encode's image records, ``(geometry, key, image_index, clamped, mismatch)`` each.

    ``sample_id`` is called when the records are built. ``context``: ``record_context()`` as it was
    at the encode; by default the current one. Does nothing without a run directory; never raises.
    """
    d, step, when = context or record_context() or (None, None, None)
    if not d or not images:
        return
    q, now = _queue(), time.time()
    with q.lock:
        if not q.items:
            q.since = now
        q.items.append((d, step, when, mode, template, sample_id, images))
        q.images += len(images)
        due = q.images >= FLUSH_RECORDS or not 0 <= now - q.since < FLUSH_SECONDS  # a clock set back too
    if due:
        flush()


def flush() -> None:
    """Build and write every queued image record of this process (encodes not yet read first). Never raises."""
    deferred.resolve()
    q = _QUEUE
    if q is None or q.pid != _PID[0] or not q.items:
        return
    with q.lock:
        items, q.items, q.images = q.items, [], 0
    by_dir: dict = {}  # run directory -> its lines (almost always one directory)
    for d, step, when, mode, template, sample_id, images in items:
        try:
            lines = _encode_lines(step, when, mode, template, sample_id(), images)
        except Exception as exc:  # a record that cannot be built: a bug, but never a crash
            _count_failure(geometry_path(d), OSError(errno.EINVAL, f'unbuildable record ({exc!r})'), len(images))
            continue
        found = by_dir.get(d)
        if found is None:
            by_dir[d] = lines
        else:
            found += lines
    by_path: dict = {}
    for d, lines in by_dir.items():
        by_path.setdefault(geometry_path(d), []).extend(lines)
    for path, lines in by_path.items():
        try:
            _append_data(path, ''.join(lines).encode())
        except OSError as exc:
            _count_failure(path, exc, len(lines))
        except ValueError as exc:  # JSON is ASCII, so never; but a log line must never crash a run
            _count_failure(path, OSError(errno.EINVAL, f'unwritable records ({exc})'), len(lines))


def _after_fork_in_child() -> None:
    # The thread that held the lock at fork time does not exist in the child: a new lock, and
    # the parent's descriptors closed (the child opens its own, keyed by its pid).
    _PID[0] = os.getpid()
    STATE.lock = threading.Lock()
    for key in [k for k in STATE.fds if k[0] != os.getpid()]:
        try:
            os.close(STATE.fds.pop(key))
        except OSError:
            pass
    STATE.lost_records = 0
    STATE.failed_writes = 0


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)
deferred.AFTER_EXIT.append(flush)  # what the exit drain of queued encodes produced


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
            _count_failure(os.path.join(d, SETTINGS_FILE), exc, 1)


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
        lines = ((0, line) for line in data[:end].split(b'\n') if line.strip())
        return [record for _, record in geometry_records(lines, bad=self._bad)]

    def _bad(self, number: int, line: bytes) -> None:
        self.bad_lines += 1
