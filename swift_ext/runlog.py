"""The run-log contract: the files a run folder holds, their line fields, the writer and the reader.

Files in a run folder (``output_dir/v<N>-<time>/``); a rank N > 0 puts ``.rankN`` before ``.jsonl``:
- ``image_geometry.jsonl``: one line per image per encode (fields: ``image_line`` / ``failure_line``)
  and one per video per encode (``"kind": "video"``: ``video_line``), written by the `_geo` templates
  through the recorder (``swift_ext.recorder``, which says when); a line without ``kind`` is an image's;
- ``image_batches.jsonl``: one event per batch: ``collate`` (the rows it holds, by their lines'
  ``row``: the fingerprint of the token ids, or a name of the process and encode where that process's
  collate found the encode itself) from the process that collated it, ``consume`` (the training step that trained on
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .cache import BoundedCache
from .forksafe import Lock, after_fork_in_child
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
# ``geo_image_index``: the row's ``image_index`` (``swift_ext.truth``), the image its boxes belong to.
COMPLETION_COLUMNS = ('geo_original_size', 'geo_resized_size', 'geo_visual_tokens', 'geo_image', 'geo_image_index')
MAX_READ = 64 << 20  # bytes a tail reads per call at most; the rest waits for the next call
# Which side of a run a process is ('trainer', 'rollout', ...), for `swift-ext check`.
ENV_ROLE = 'SWIFT_EXT_ROLE'
# How a line's geometry was known: read from the encode's outputs; from the resized image (or the sampled,
# resized frames) the template handed an inference engine (vLLM), the rest derived; predicted from the
# size (the engine resizes).
BASES = ('encode', 'handed_image', 'handed_video', 'prediction')

# --- the line contract: fields and limits, shared by the writer and every reader ------------------------
# An encode's image_geometry line holds RECORD_HEAD, the ``ImageGeometry.to_dict()`` fields and
# RECORD_TAIL; a failure's, RECORD_HEAD and FAILURE_TAIL; either adds PAYLOAD_FIELD for an in-memory
# image (its decoded size). Readers (`review`, the callback) read these names and no others.
RECORD_HEAD = ('step', 'rank', 'pid', 'mode', 'sample_id', 'image_index', 'image', 'template')
RECORD_TAIL = ('clamped', 'mismatch', 'error', 'basis', 'row', 'batch', 'encode', 'time')
FAILURE_TAIL = ('error', 'batch', 'time')
# A video's line: VIDEO_HEAD, the ``VideoGeometry.to_dict()`` fields (``clamped`` among them: a list) and
# VIDEO_TAIL; a failed video's, VIDEO_HEAD and FAILURE_TAIL.
VIDEO_HEAD = ('step', 'rank', 'pid', 'mode', 'sample_id', 'kind', 'video_index', 'video', 'template')
VIDEO_TAIL = ('mismatch', 'error', 'basis', 'row', 'batch', 'encode', 'time')
KINDS = ('image', 'video')
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


def line_kind(record: Any) -> str:
    """``'video'`` for a video's line, ``'image'`` for any other (older logs have no ``kind``)."""
    return 'video' if isinstance(record, dict) and record.get('kind') == 'video' else 'image'


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
    fds: dict = {}  # (pid, path) -> descriptor
    lock = Lock()
    lost_records = 0  # image lines this process could not make or write
    step: int | None = None  # the step in progress in the trainer (rollout lines carry it)


STATE = _State()
_PID = [os.getpid()]  # kept current by the fork hook: os.getpid() is a system call
_RANK = (None, -1)  # (pid, rank): a forked worker re-reads, its pid differs


def process_id() -> int:
    """This process's id (``os.getpid()`` is a system call; this is kept current by the fork hook)."""
    return _PID[0]


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
# os.environ's own store (bytes -> bytes on POSIX), which every change to os.environ writes through:
# os.environ.get encodes the name and decodes the value in Python, about 8 us right after an encode has
# filled the caches, where one dict lookup here is under 3 us. Read at every encode (`logging_encodes`,
# the image root) and every write trigger.
_ENVIRON = os.environ
_ENV_DATA = os.environ._data if os.name == 'posix' and isinstance(getattr(os.environ, '_data', None), dict) else None
_ENV_NAMES: dict = {}  # name -> its bytes key
_ENV_VALUES = BoundedCache(64)  # bytes value -> str


def env(name: str) -> str | None:
    """``os.environ.get(name)``, read from its store."""
    if _ENV_DATA is None or os.environ is not _ENVIRON:  # not POSIX, or os.environ was replaced (a test's mock)
        return os.environ.get(name)
    key = _ENV_NAMES.get(name)
    if key is None:
        key = _ENV_NAMES[name] = os.fsencode(name)
    value = _ENV_DATA.get(key)
    if value is None:
        return None
    text = _ENV_VALUES.get(value)
    if text is None:
        text = _ENV_VALUES[value] = os.fsdecode(value)
    return text


def log_dir() -> str | None:
    """The run folder image lines go to, or None (then nothing is written).

    Asked at write triggers, not per encode: a missing channel file costs one failed open.
    """
    d = env(ENV_DIR)
    if d or not env(ENV_CHANNEL):
        return d or None
    d = _read_channel(os.environ[ENV_CHANNEL])
    if d:
        os.environ[ENV_DIR] = d  # found once for this process and those it starts
    return d


def logging_encodes() -> bool:
    """Whether an encode made now gets log lines: a run folder is named, or a worker's may be named later.

    Encodes made before (ms-swift encodes a sample to print it before the trainer exists) are not logged.
    """
    return bool(env(ENV_DIR)) or log_dir_pending()


def log_dir_pending() -> bool:
    """True in a worker process started before the run folder was named, which the channel may still name."""
    if env(ENV_DIR) or not env(ENV_CHANNEL):
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


# --- the writer ------------------------------------------------------------------------------------------------
def write(directory: str, text: str, images: int, events: Sequence[dict] = ()) -> None:
    """Append ``text`` (whole image lines) to this rank's geometry file, then ``events`` to its batch log.

    Never raises: a failed write is counted and warned about.
    """
    paths = _PATHS.get((directory, _PID[0]))
    if paths is None:
        paths = _PATHS[(directory, _PID[0])] = (geometry_path(directory), batches_path(directory))
    if text:
        path = paths[0]
        try:
            append_data(path, text.encode('utf-8', 'backslashreplace'))
        except OSError as exc:
            _count_failure(path, exc, images)
    if events:
        path = paths[1]
        try:
            append_lines(path, events)
        except OSError as exc:
            _count_failure(path, exc, 0)
        except (TypeError, ValueError) as exc:  # an event that is not JSON: a bug, but never a crash
            _count_failure(path, OSError(errno.EINVAL, f'unserialisable event ({exc})'), 0)


_dumps = json.JSONEncoder(separators=(',', ':')).encode  # json.dumps(..., separators=(',', ':'))
# (run folder, pid) -> this rank's (geometry file, batch log): asked at every write trigger. A forked child
# keys by its own pid, so it re-reads its rank.
_PATHS = BoundedCache(64)


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
        lines = ((0, line) for line in data[:end].split(b'\n') if line.strip())
        return [record for _, record in geometry_records(lines, bad=self._bad)]

    def _bad(self, number: int, line: bytes) -> None:
        self.bad_lines += 1
