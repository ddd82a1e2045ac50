"""The recorder: one per process, the one queue between a `_geo` template's encodes and the disk.

An encode leaves a *job*: references into what it produced (the keys its family reads, its images'
entries, its token ids), its mode and its time; nothing is computed inside the encode, where the CPU
caches hold its pixels. A job is *resolved* (the family reads the geometry from the encode; the
geometry store gets it, for rewards) and its lines are *written* (one ``os.write`` of whole lines
per trigger), in encode order, on these triggers:

1. **collate** -- the template collates a batch (ms-swift's ``data_collator``, in whichever process
   encoded it: a dataloader worker, a streaming pipeline, the trainer). Waiting encodes are resolved,
   the batch's are tagged with its fingerprint, and a ``collate`` event names the batch's rows in the
   batch log: an encode the collate found itself (the very token-id list it returned) by a name of
   this process and encode (``<token>-<encode>``), any other by the fingerprint of its token ids, as
   their lines' ``row`` does. Outside the trainer the lines are written now, with ``step`` null; in
   the trainer, a training batch's lines wait for 2.
2. **consume** -- the trainer trains on a batch (the geo_log callback's hook on ``compute_loss``): that
   batch's waiting lines are written with the step, and a ``consume`` event records the step for
   the lines written earlier (by a worker, or before the collate).
3. **count** -- ``MAX_JOBS`` encodes wait unresolved, or ``MAX_HELD`` lines wait for a consume. A worker
   process that only encodes and never collates (ms-swift's packing workers hand each encode to the
   trainer right away) writes each encode's lines at once, so they are on disk before its row is used.
4. **time** -- the oldest unresolved encode has waited ``MAX_SECONDS`` (checked at the next encode).
5. **lookup** -- a reward or the completions table asks the geometry store (``resolve()``).
6. **exit** -- the process exits normally (atexit; a multiprocessing child's finalizer).

A SIGKILL loses only the encodes that had not reached a trigger. A failed encode leaves a failure job
(only the images at fault), tagged with the next batch this process collates: the batch that took the
replacement sample. A forked child starts with an empty queue (its parent writes what it queued),
fresh locks (``swift_ext.forksafe``) and is never the trainer. Internal module.
"""
from __future__ import annotations

import atexit
import collections
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import xxhash

from . import loglines, runlog
from .forksafe import Lock, after_fork_in_child
from .warn import warn_once

logger = logging.getLogger(__name__)

MAX_JOBS = 16
# Only for encodes no collate or lookup follows (`swift infer`, a user's own loop): in training those
# come first. At 1 s this fired inside a training batch's encodes and recorded them a few at a time
# in the caches of the encode just done (benchmark 1: glm4_5v 1.011-1.016, then 1.004 at 10 s).
MAX_SECONDS = 10.0
MAX_HELD = 4096  # lines the trainer keeps for batches it has collated but not trained on yet
# Engine modes encode for generation: their batches are never trained on.
ENGINE_MODES = frozenset({'transformers', 'vllm', 'lmdeploy', 'sglang'})
ID_KEYS = ('input_ids', 'chosen_input_ids', 'rejected_input_ids')  # rows of rlhf batches carry both


# An encoder-decoder template's `input_ids` are the encoder's prompt alone: Florence-2 writes the same task prompt
# for every image of an `<OD>` dataset, so its rows and batches are told apart by their decoder side (`labels`) too.
DECODER_KEY = 'labels'


def row_fingerprint(ids: Any, decoder: Any = None) -> str:
    """16 hex digits identifying a sequence of token ids (and an encoder-decoder row's ``decoder`` ids), the same
    in every process (ints hash alike)."""
    if type(ids) is not list and hasattr(ids, 'tolist'):
        ids = ids.tolist()
    if decoder is None:
        return f'{hash(tuple(ids)) & 0xFFFFFFFFFFFFFFFF:016x}'
    if hasattr(decoder, 'tolist'):
        decoder = decoder.tolist()
    return f'{hash((tuple(ids), tuple(decoder))) & 0xFFFFFFFFFFFFFFFF:016x}'


def batch_fingerprint(batch: Any, decoder_key: str | None = None) -> str | None:
    """16 hex digits identifying a collated batch by its ``input_ids`` tensor (where it sits, GRPO's included);
    an encoder-decoder batch by its ``decoder_key`` tensor too."""
    if not isinstance(batch, Mapping):
        return None
    if batch.get('input_ids') is None and isinstance(batch.get('model_inputs'), Mapping):
        batch = batch['model_inputs']
    tensors = (batch.get('input_ids'), batch.get(decoder_key)) if decoder_key else (batch.get('input_ids'),)
    if any(t is None or not hasattr(t, 'shape') for t in tensors):
        return None
    try:
        arrays = [_id_buffer(_as_numpy(t)) for t in tensors]
        # The shapes as the seed (a tuple of ints hashes alike in every process); one call hashes a single tensor.
        seed = hash(tuple(a.shape for a in arrays)) & 0xFFFFFFFFFFFFFFFF
        if len(arrays) == 1:
            return xxhash.xxh3_64_hexdigest(arrays[0], seed)
        digest = xxhash.xxh3_64(seed=seed)
        for a in arrays:
            digest.update(a)
    except (AttributeError, RuntimeError, TypeError, ValueError, BufferError, OverflowError):
        return None
    return digest.hexdigest()


def _as_numpy(tensor):
    # A collated batch is on the CPU and needs no grad: `numpy()` shares its memory. Each torch call costs
    # microseconds on caches the batch's images just filled, so the detach / copy only where it is refused.
    try:
        return tensor.numpy()
    except (RuntimeError, TypeError):  # on a GPU, or requires grad
        return tensor.detach().to('cpu').numpy()


def _id_buffer(array):
    # One form for the same ids however a batch holds them (int32 or int64, a strided view). XXH3 reads
    # 160 KB (8 x 2,500 ids) in about 3 us, where SHA-1 took 40 and BLAKE2b 100: paid per collate in the
    # worker and per micro-batch in the trainer; 64 bits tell apart the few thousand batches a run keeps.
    if array.dtype.str != '<i8':
        return array.astype('<i8', order='C')
    return array if array.flags.c_contiguous else array.copy(order='C')


class Job:
    """One encode's work: ``resolve(*args)`` returns its lines (``loglines.ImageLines``) or None.

    ``ids``: the token-id lists the encode returned (one per sequence: two for chosen / rejected), held
    by reference until its lines are written, to find it in a collated batch or, where none found it, for
    its row fingerprint;
    ``decoder``: an encoder-decoder encode's decoder ids (``DECODER_KEY``), the same way, else None.
    A failure job has its lines from the start and no ids.
    """

    __slots__ = ('resolve', 'args', 'ids', 'decoder', 'engine', 'failure', 'step', 'lines', 'row', 'batch', 'encode')

    def __init__(self, resolve: Callable[..., Any] | None, args: tuple, ids: Sequence, engine: bool,
                 step: Any, lines: Any = None, decoder: Any = None):
        self.resolve, self.args, self.ids, self.engine, self.step = resolve, args, ids, engine, step
        self.decoder = decoder
        self.failure = lines is not None
        self.lines, self.row, self.batch, self.encode = lines, None, None, 0


class Recorder:
    """The per-process queue; see the module docstring for its triggers."""

    def __init__(self):
        self.pid = os.getpid()
        self.token = secrets.token_hex(4)  # names this process's rows that its own collates found (see _tag)
        self.lock = Lock()  # one drain at a time; a lookup waits for a drain in progress
        self.todo: collections.deque = collections.deque()  # unresolved jobs (appended without the lock)
        self.ready: list = []  # resolved jobs whose lines are not written yet, in encode order
        self.since = 0.0  # when the oldest unresolved job was queued
        self.trainer = False  # this process trains on the batches (set by the geo_log callback)
        self.consumed: collections.OrderedDict = collections.OrderedDict()  # batch -> step, recent
        self.encodes = 0
        self.encode_only: bool | None = None  # a worker that encodes and never collates (decided once)
        self._exit_hooked = False

    # --- the encode side ----------------------------------------------------------------------------
    def defer(self, resolve: Callable[..., Any], args: tuple, *, ids: Sequence = (), mode: str = 'train',
              step: Any = None, decoder: Any = None) -> None:
        """Queue an encode's job; it resolves at the latest at the next trigger. Never raises.

        ``decoder``: an encoder-decoder encode's decoder ids (``DECODER_KEY``), part of its row fingerprint.
        """
        if not self.todo:
            self.since = time.monotonic()
            if not self._exit_hooked:
                self._hook_exit()
        self.todo.append(Job(resolve, args, ids, mode in ENGINE_MODES, step, decoder=decoder))
        if self.encode_only is None:
            self.encode_only = _encode_only_worker()
        if self.encode_only or len(self.todo) >= MAX_JOBS or time.monotonic() - self.since >= MAX_SECONDS:
            self.drain()

    def failed(self, lines: Any, *, mode: str, step: Any) -> None:
        """Queue an encode's failure lines (written with the next collate's batch, or at a trigger)."""
        with self.lock:
            self.ready.append(Job(None, (), (), mode in ENGINE_MODES, step, lines))
        if not self._exit_hooked:
            self._hook_exit()

    # --- triggers -----------------------------------------------------------------------------------
    def drain(self) -> None:
        """Resolve every waiting encode and write what no consume awaits (the count, time and lookup triggers).

        Waits for a drain in progress in another thread (it may hold a job it took but has not finished);
        called from inside a job, does nothing.
        """
        if getattr(_DRAINING, 'on', False) or not (self.todo or self.ready or self.lock.locked()):
            return
        _DRAINING.on = True
        try:
            with self.lock:
                self._resolve_all()
                self._write(self._take(lambda job: not self._held(job)))
        finally:
            _DRAINING.on = False

    def collate(self, rows: Iterable[Mapping], collated: Any, mode: str, decoder_key: str | None = None) -> None:
        """A batch was collated from ``rows`` (the encodes' outputs) into ``collated``. Never raises.

        ``decoder_key``: ``DECODER_KEY`` for an encoder-decoder template's batch (part of the fingerprints).
        """
        try:
            with self.lock:
                self._resolve_all()
                if mode in ENGINE_MODES:  # generation batches: nothing trains on them
                    self._write(self._take(lambda job: not self._held(job)))
                    return
                batch = batch_fingerprint(collated, decoder_key)
                names = self._tag(rows, batch, decoder_key)
                events = [] if batch is None else [loglines.collate_event(batch, names)]
                self._write(self._take(lambda job: not self._held(job)), events)
        except Exception as exc:  # recording must never cost the user a batch
            warn_once(f'collate:{type(exc).__name__}', f'swift-ext could not record a batch ({exc!r}); '
                      'training continues without it.')

    def consume(self, batch: str | None, step: Any) -> None:
        """The trainer trains on ``batch`` at ``step``: write its waiting lines with the step. Never raises."""
        if batch is None:
            return
        try:
            with self.lock:
                self.consumed[batch] = step
                self.consumed.move_to_end(batch)
                while len(self.consumed) > MAX_HELD:
                    self.consumed.popitem(last=False)
                taken = self._take(lambda job: job.batch == batch)
                for job in taken:
                    if job.step is None:
                        job.step = step
                self._write(taken, [loglines.consume_event(batch, step)])
        except Exception as exc:
            warn_once(f'consume:{type(exc).__name__}', f'swift-ext could not record a trained batch ({exc!r}).')

    def resolve(self) -> None:
        """The lookup trigger: every waiting encode resolved (the store holds its geometry)."""
        if self.todo or self.lock.locked():
            self.drain()

    def flush(self) -> None:
        """Write everything, lines held for a consume included (with ``step`` null): exit, tests."""
        with self.lock:
            self._resolve_all()
            self._write(self._take(lambda job: True))

    def waiting(self) -> int:
        """Encodes not resolved yet."""
        return len(self.todo)

    # --- inside the lock ----------------------------------------------------------------------------
    def _resolve_all(self) -> None:
        while self.todo:
            job = self.todo.popleft()  # only drains pop, one at a time
            try:
                job.lines = job.resolve(*job.args)
            except Exception as exc:  # the template's resolve guards itself: this is a bug, never a crash
                self._count_lost(job, exc)
                continue
            finally:
                job.resolve = job.args = None  # the encode's outputs are freed here (its ids wait for its row)
            if job.lines is not None:
                self.encodes += 1
                job.encode = self.encodes
                self.ready.append(job)
        if len(self.ready) > MAX_HELD:  # held too long: the oldest go out without waiting for a consume
            self._write(self._take(lambda job: True, limit=len(self.ready) - MAX_HELD // 2))

    def _held(self, job: Job) -> bool:
        return self.trainer and job.batch is not None and not job.engine and job.batch not in self.consumed

    def _take(self, keep_out: Callable[[Job], bool], limit: int | None = None) -> list:
        taken, kept = [], []
        for job in self.ready:
            (taken if keep_out(job) and (limit is None or len(taken) < limit) else kept).append(job)
        self.ready = kept
        return taken

    def _tag(self, rows: Iterable[Mapping], batch: str | None, decoder_key: str | None = None) -> list:
        """Tag the waiting jobs of ``rows`` (and failures waiting for a batch) with ``batch``.

        Returns the rows' names. A row is found by identity (the very list its encode returned), named
        ``<token>-<encode>`` (nothing to hash), or, where the dataset copied it (streaming), by its
        fingerprint: the waiting encodes are fingerprinted then, once a collate.
        """
        by_ids, by_row = {}, None
        for job in self.ready:
            if job.batch is None and not job.failure and not job.engine:
                for ids in job.ids:
                    by_ids[id(ids)] = job
        names = []
        for row in rows:
            for key in ID_KEYS:
                ids = row.get(key) if isinstance(row, Mapping) else None
                if ids is None:
                    continue
                job = by_ids.get(id(ids))
                if job is not None and job.batch is None and any(x is ids for x in job.ids):
                    if job.row is None:  # found itself: named by this process and encode, no hashing
                        job.row, job.decoder = f'{self.token}-{job.encode}', None
                    names.append(job.row)
                else:
                    by_row = self._by_row() if by_row is None else by_row
                    fingerprint = row_fingerprint(ids, row.get(decoder_key) if decoder_key else None)
                    found = by_row.get(fingerprint)
                    job = found.popleft() if found else None
                    names.append(fingerprint)
                if job is not None and job.batch is None:
                    job.batch = batch
        for job in self.ready:
            if job.failure and job.batch is None and not job.engine:
                job.batch = batch  # the batch that took the replacement sample
        return names

    def _by_row(self) -> dict:
        """The untagged waiting encodes by row fingerprint, oldest first (for rows a collate got as copies)."""
        by_row = collections.defaultdict(collections.deque)
        for job in self.ready:
            if job.batch is None and not job.failure and not job.engine:
                by_row[self._row(job)].append(job)
        return by_row

    def _write(self, jobs: list, events: Sequence[dict] = ()) -> None:
        if not jobs and not events:
            return
        directory = runlog.log_dir()
        if directory is None:
            if runlog.log_dir_pending():  # a run log may be named later: keep what waits, MAX_HELD at most
                self.ready[:0] = jobs[-MAX_HELD:]
            return
        text, images = [], 0
        for job in jobs:
            try:
                text.append(job.lines.render(step=job.step, batch=job.batch, row=self._row(job), encode=job.encode))
                images += job.lines.count
            except Exception as exc:
                self._count_lost(job, exc)
        runlog.write(directory, ''.join(text), images, events)

    @staticmethod
    def _row(job: Job) -> str | None:
        """The job's row: the fingerprint of its token ids, made when first asked (None for an engine's encode)."""
        if job.row is None and job.ids and not job.engine:
            job.row, job.decoder = row_fingerprint(job.ids[0], job.decoder), None
        return job.row

    def _count_lost(self, job: Job, exc: Exception) -> None:
        runlog.count_lost(getattr(job.lines, 'count', None) or 1)
        warn_once(f'record:{type(exc).__name__}', f'swift-ext could not record image geometry ({exc!r}); '
                  'training continues without it, and the steps that lose lines leave their per-step '
                  'vision/ metrics out.')

    def _hook_exit(self) -> None:
        # atexit for the main process; a multiprocessing child (a dataloader worker) runs only its finalizers.
        import multiprocessing.util
        self._exit_hooked = True
        multiprocessing.util.Finalize(self, _flush_at_exit, exitpriority=200)
        atexit.register(_flush_at_exit)


def _encode_only_worker() -> bool:
    """A multiprocessing child that is not a dataloader worker: it encodes for another process's collate."""
    import multiprocessing
    if multiprocessing.parent_process() is None:
        return False
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return True
    return get_worker_info() is None


def _flush_at_exit() -> None:
    recorder = _RECORDER[0]
    if recorder.pid == os.getpid():
        try:
            recorder.flush()
        except Exception:  # an exit must not fail for a log line
            logger.debug('swift-ext: writing the geometry log at exit failed', exc_info=True)


_RECORDER = [Recorder()]
_DRAINING = threading.local()


def recorder() -> Recorder:
    """This process's recorder."""
    return _RECORDER[0]


@after_fork_in_child
def _new_recorder_in_child() -> None:
    _RECORDER[0] = Recorder()
