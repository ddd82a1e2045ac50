"""The `geo_log` callback: points geometry logging at the run and logs `vision/` metrics.

Select it with ``--callbacks geo_log`` (after ``--external_plugins templates/plugin.py``).
ms-swift builds it as ``callbacks_map['geo_log'](args, trainer)`` inside the trainer's
``__init__``, before any dataloader worker exists, so the environment variable set here
is inherited by the workers that encode the data.

How the metrics reach ``logging.jsonl``: at each ``on_step_end`` the callback reads the
geometry lines written since the last read (by this process *and* by its dataloader
workers: the rank's file, from a saved byte offset, complete lines only) and feeds them
to metric objects placed in the trainer's own ``custom_metrics['train']`` store.
ms-swift's ``SwiftMixin.log`` (which GRPO's ``log`` also calls) merges that store into
``logs`` *before* transformers' ``Trainer.log`` appends to ``state.log_history`` and calls
the ``on_log`` callbacks, among them ms-swift's progress callback, which writes
``logging.jsonl``, and TensorBoard. The store is all-reduced across ranks. A trainer
without that store falls back to adding the keys to ``logs`` in ``on_log``, which still
runs before ms-swift's writer (user callbacks precede the progress callback) but after
TensorBoard's and after ``log_history`` is written.

Which step a value belongs to: the images *encoded* since the previous step end. GRPO
encodes inside the step, in the trainer's process, so its values are exact. Dataloader
workers (SFT) encode up to ``dataloader_num_workers * prefetch_factor`` batches ahead: the
first logged step also counts the prefetched batches, and later values run that many
batches ahead of the step they are logged with.
"""
from __future__ import annotations

import functools
import logging
import os
from collections import deque
from collections.abc import Iterable

from transformers import TrainerCallback

from . import runlog
from .images import image_key
from .records import STORE, active_settings, row_limits_key
from .registry import register
from .runlog import COMPLETION_COLUMNS, GeoFileTail

logger = logging.getLogger(__name__)

CALLBACK_NAME = 'geo_log'
PREFIX = 'vision/'


# --- aggregation ----------------------------------------------------------------------------
def step_values(records: Iterable[dict]) -> dict[str, list]:
    """Per-image values of one step's training-encode records, keyed by metric name.

    Rollout encodes (GRPO) repeat the training images and are left out. Keys with no
    value (no tiles on a Qwen model, no images) are absent.
    """
    tokens, megapixels, tiles, clamped = [], [], [], []
    failed = 0
    for rec in records:
        if rec.get('mode', 'train') != 'train':
            continue
        if rec.get('error'):
            failed += 1
            continue
        try:
            tokens.append(int(rec['num_tokens']))
            megapixels.append(rec['resized_width'] * rec['resized_height'] / 1e6)
        except (KeyError, TypeError, ValueError):
            continue
        clamped.append(1.0 if rec.get('clamped') == 'max_pixels' else 0.0)
        if rec.get('tile_cols') is not None:
            tiles.append(int(rec.get('num_tiles') or 1))
    out = {'visual_tokens_per_image_mean': tokens, 'visual_tokens_per_image_max': tokens,
           'resized_megapixels_mean': megapixels, 'tiles_per_image_mean': tiles,
           'clamped_by_max_pixels_frac': clamped, 'images_per_step': [len(tokens)],
           'failed_images_per_step': [failed]}
    return {k: v for k, v in out.items() if v}


class _Metric:
    """Base for metrics in ms-swift's ``custom_metrics`` store: update, compute, reset.

    ``compute`` returns None when nothing was seen on any rank (ms-swift then drops the key).
    """

    op = 'sum'

    def __init__(self, device=None):
        self.device = device  # a device, or a callable giving one (resolved at compute time)
        self.reset()

    def reset(self) -> None:
        self.a, self.b = 0.0, 0

    def _reduced(self):
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            return self.a, self.b, 1
        import torch
        device = self.device() if callable(self.device) else self.device
        t = torch.tensor([self.a, float(self.b)], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX if self.op == 'max' else dist.ReduceOp.SUM)
        return t[0].item(), int(t[1].item()), dist.get_world_size()


class MeanMetric(_Metric):
    """Mean of every value seen (on all ranks)."""

    def update(self, values: list) -> None:
        self.a += float(sum(values))
        self.b += len(values)

    def compute(self) -> float | None:
        total, count, _ = self._reduced()
        return total / count if count else None


class MaxMetric(_Metric):
    """Largest value seen (on all ranks)."""

    op = 'max'

    def reset(self) -> None:
        self.a, self.b = float('-inf'), 0

    def update(self, values: list) -> None:
        self.a = max(self.a, float(max(values)))
        self.b += len(values)

    def compute(self) -> float | None:
        value, count, _ = self._reduced()
        return value if count else None


class PerStepTotalMetric(_Metric):
    """A per-step count summed over ranks, averaged over steps (each rank adds one per step)."""

    def update(self, values: list) -> None:
        self.a += float(sum(values))
        self.b += 1

    def compute(self) -> float | None:
        total, rank_steps, world = self._reduced()
        return total * world / rank_steps if rank_steps else None


METRICS = {
    'visual_tokens_per_image_mean': MeanMetric,
    'visual_tokens_per_image_max': MaxMetric,
    'resized_megapixels_mean': MeanMetric,
    'tiles_per_image_mean': MeanMetric,
    'clamped_by_max_pixels_frac': MeanMetric,
    'images_per_step': PerStepTotalMetric,
    'failed_images_per_step': PerStepTotalMetric,
}


def new_metrics(device=None) -> dict[str, _Metric]:
    return {PREFIX + name: cls(device) for name, cls in METRICS.items()}


def update_metrics(metrics: dict[str, _Metric], records: Iterable[dict], *, complete: bool = True) -> None:
    """Feed one step's records to the metrics (every step counts, even one with no image).

    ``complete=False`` (records of this step were lost: a failed write, a deleted log) leaves
    the step out of the per-step counts, which would otherwise read 0 instead of unknown.
    """
    values = step_values(records)
    if complete:
        values.setdefault('images_per_step', [0])
        values.setdefault('failed_images_per_step', [0])
    else:
        values.pop('images_per_step', None)
        values.pop('failed_images_per_step', None)
    for name, vals in values.items():
        metrics[PREFIX + name].update(vals)


def compute_metrics(metrics: dict[str, _Metric]) -> dict[str, float]:
    """Values of the metrics that saw something, then reset them."""
    out = {}
    for key in sorted(metrics):
        value = metrics[key].compute()
        metrics[key].reset()
        if value is not None:
            out[key] = round(value, 6)
    return out


# --- the callback ---------------------------------------------------------------------------
def _guarded(method):
    """Run a callback method; on error log one warning per method and let training go on."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # the callback must never end a training run
            if method.__name__ not in self._warned:
                self._warned.add(method.__name__)
                logger.warning('swift-ext geo_log: %s failed (%r); training continues without '
                               'it.', method.__name__, exc, exc_info=True)
        return None
    return wrapper


class GeoLogCallback(TrainerCallback):
    """Routes `_geo` template records into the run directory and logs `vision/` metrics."""

    def __init__(self, args=None, trainer=None):
        self.args = args
        self.trainer = trainer
        self._warned: set = set()
        self.log_dir: str | None = None
        self.tail: GeoFileTail | None = None
        device = functools.partial(getattr, args, 'device', None)
        self._own_metrics: dict[str, _Metric] | None = new_metrics(device)
        self.metrics = self._own_metrics
        self._lost_seen = runlog.lost_records()
        self._setup(device)

    @_guarded
    def _setup(self, device) -> None:
        self._point_at(getattr(self.args, 'output_dir', None))
        runlog.share_step()  # before the dataloader workers fork, so they see each step
        store = getattr(self.trainer, 'custom_metrics', None)
        if isinstance(store, dict) and isinstance(store.get('train'), dict):
            store['train'].update(self._own_metrics)  # the same keys on every rank
            self._own_metrics = None
        template = getattr(self.trainer, 'template', None)
        if hasattr(template, 'geo_settings') and getattr(template, 'processor', None) is not None:
            runlog.log_settings(template.geo_settings())  # now that the run directory is known

    def _point_at(self, output_dir: str | None) -> None:
        if not output_dir:
            return
        output_dir = os.path.abspath(output_dir)
        os.environ[runlog.ENV_DIR] = output_dir
        if output_dir != self.log_dir:
            self.log_dir = output_dir
            self.tail = GeoFileTail(runlog.geometry_path(output_dir), from_end=True)
            logger.info('swift-ext geo_log: image geometry goes to %s', self.tail.path)

    @_guarded
    def on_train_begin(self, args, state, control, **kwargs):
        self._point_at(getattr(args, 'output_dir', None))
        runlog.set_step(state.global_step + 1)
        self._wrap_log_rollout()  # GRPO builds its completion logs after the callbacks

    @_guarded
    def on_step_begin(self, args, state, control, **kwargs):
        # Records of the step being computed carry its number as logging.jsonl will
        # show it (global_step after the step): state.global_step + 1.
        runlog.set_step(state.global_step + 1)

    @_guarded
    def on_step_end(self, args, state, control, **kwargs):
        # Batches fetched from now on belong to the next step.
        runlog.set_step(state.global_step + 1)
        runlog.flush()  # this process's queued records, so the step's metrics see them
        if self.tail is not None:
            records = self.tail.read_new()
            lost = runlog.lost_records()
            complete = lost == self._lost_seen and not self.tail.missing
            self._lost_seen = lost
            update_metrics(self.metrics, records, complete=complete)

    @_guarded
    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._own_metrics is not None and logs is not None and 'loss' in logs:
            logs.update(compute_metrics(self._own_metrics))

    # --- GRPO completions table -----------------------------------------------------------
    def _wrap_log_rollout(self) -> None:
        trainer = self.trainer
        logs = getattr(trainer, '_logs', None)
        original = getattr(trainer, '_log_rollout', None)
        if original is None or not isinstance(logs, dict) or 'prompt' not in logs:
            return
        if not getattr(trainer, 'log_completions', False) or hasattr(original, 'geo_wrapped'):
            return

        @functools.wraps(original)
        def log_rollout(samples):
            original(samples)
            self._add_completion_columns(samples)
        log_rollout.geo_wrapped = True
        trainer._log_rollout = log_rollout

    def _add_completion_columns(self, samples) -> None:
        trainer = self.trainer
        try:
            local = completion_geometry(samples)
        except Exception as exc:
            if 'columns' not in self._warned:
                self._warned.add('columns')
                logger.warning('swift-ext geo_log: no geometry columns for completions (%r).', exc)
            local = {k: [None] * len(samples) for k in COMPLETION_COLUMNS}
        try:
            # Every rank gathers the same keys in the same order, as ms-swift does for 'solution'.
            for key in COMPLETION_COLUMNS:
                gathered = trainer._gather_and_flatten(local[key], flatten_level=0)
                if key not in trainer._logs:
                    trainer._logs[key] = deque(maxlen=trainer.args.generation_batch_size)
                trainer._logs[key].extend(gathered)
        except Exception as exc:
            if 'gather' not in self._warned:
                self._warned.add('gather')
                logger.warning('swift-ext geo_log: could not add completion columns (%r).', exc)


def completion_geometry(samples) -> dict[str, list]:
    """Per sample: original size, resized size ('WxH', ';' between images), total tokens, image keys.

    Looked up in the geometry the `_geo` template recorded in this process when it encoded
    the sample for training; None where it recorded nothing.
    """
    settings = active_settings()
    out = {k: [] for k in COMPLETION_COLUMNS}
    for sample in samples:
        images = getattr(sample, 'images', None) or []
        extra = getattr(sample, 'extra', None) or {}
        limits = row_limits_key(extra.get('chat_template_kwargs'))
        geos = [STORE.get(image_key(img), limits, settings.template) if settings else None
                for img in images]
        if not geos or any(g is None for g in geos):
            for key in COMPLETION_COLUMNS:
                out[key].append(None)
            continue
        out['geo_original_size'].append(
            ';'.join(f'{g.original_width}x{g.original_height}' for g in geos))
        out['geo_resized_size'].append(
            ';'.join(f'{g.resized_width}x{g.resized_height}' for g in geos))
        out['geo_visual_tokens'].append(sum(g.num_tokens for g in geos))
        out['geo_image'].append(';'.join(image_key(img) for img in images))  # the log's `image` key
    return out


def register_callbacks() -> list[str]:
    """Add `geo_log` to ms-swift's ``callbacks_map``; a second call changes nothing."""
    from swift.callbacks import callbacks_map
    register(callbacks_map, CALLBACK_NAME, GeoLogCallback, 'callback')
    return [CALLBACK_NAME]
