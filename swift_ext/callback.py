"""The `geo_log` callback: points geometry logging at the run and logs `vision/` metrics.

Select it with ``--callbacks geo_log`` (after ``--external_plugins templates/plugin.py``).
ms-swift builds it as ``callbacks_map['geo_log'](args, trainer)`` inside the trainer's
``__init__``, before any dataloader worker exists: it names the run folder (``runlog.publish_log_dir``:
the environment for processes started later, the channel file for those started earlier, such as
ms-swift's packing workers), marks this process as the trainer for the recorder, and wraps the
trainer's ``compute_loss`` to see which batch each training step trains on.

Which step a value belongs to: the images of the batches the step trained on, whoever encoded them
and whenever (a dataloader worker's prefetch, a streaming pipeline's read-ahead, a packing worker,
GRPO's generation for several steps, a batch trained on again with ``--num_iterations``): the
trainer fingerprints each batch it trains on and joins it with the geometry lines through the batch
log (``swift_ext.steps``). Where a step's batches cannot all be accounted for (a batch with no
``input_ids`` to fingerprint, lines not on disk yet or lost), the per-step counts
(``images_per_step``, ``failed_images_per_step``) are left out of that step, never written as 0,
and one warning says why.

How the metrics reach ``logging.jsonl``: at each ``on_step_end`` the callback reads the lines and
events written since the last read and feeds the step's to metric objects placed in the trainer's
own ``custom_metrics['train']`` store. ms-swift's ``SwiftMixin.log`` (which GRPO's ``log`` also calls)
merges that store into ``logs`` *before* transformers' ``Trainer.log`` appends to
``state.log_history`` and calls the ``on_log`` callbacks, among them ms-swift's progress callback,
which writes ``logging.jsonl``, and TensorBoard. The store is all-reduced across ranks. A trainer
without that store falls back to adding the keys to ``logs`` in ``on_log``, which still runs before
ms-swift's writer (user callbacks precede the progress callback) but after TensorBoard's and after
``log_history`` is written.

Internal module: select it with ``--callbacks geo_log``.
"""
from __future__ import annotations

import functools
import logging
import os
from collections import deque
from collections.abc import Iterable

from transformers import TrainerCallback

from . import runlog, truth
from .families import family_of
from .geometry import Clamp
from .images import image_key
from .recorder import DECODER_KEY, batch_fingerprint, recorder
from .registry import register
from .runlog import COMPLETION_COLUMNS, GeoFileTail, line_kind
from .steps import StepIndex
from .store import STORE, active_settings, row_limits_key
from .warn import warn_once

logger = logging.getLogger(__name__)

CALLBACK_NAME = 'geo_log'
PREFIX = 'vision/'


# --- aggregation ----------------------------------------------------------------------------
def step_values(lines: Iterable[dict], clamps: Iterable[str] = tuple(Clamp)) -> dict[str, list]:
    """Per-image (and per-video) values of one step's training lines, keyed by metric name.

    Rollout lines (GRPO) repeat the training images and are left out. Keys with no value (no
    tiles on a Qwen model, no images) are absent. ``failed_images_per_step`` counts images, not
    encode attempts: a file ms-swift tried three times fails once. Video lines give the video
    metrics (``VIDEO_METRICS``) and count in no image metric.
    """
    clamps = tuple(str(c) for c in clamps)
    tokens, megapixels, tiles, any_clamp = [], [], [], []
    by_clamp = {c: [] for c in clamps}
    failed = set()
    videos: list = []
    for line in lines:
        if line.get('mode', 'train') != 'train':
            continue
        if line_kind(line) == 'video':
            videos.append(line)
            continue
        if line.get('error'):
            failed.add((line.get('image'), line.get('image_index')))
            continue
        try:
            tokens.append(int(line['num_tokens']))
            megapixels.append(line['resized_width'] * line['resized_height'] / 1e6)
        except (KeyError, TypeError, ValueError):
            continue
        clamped = line.get('clamped')
        any_clamp.append(1.0 if clamped else 0.0)
        for c in clamps:
            by_clamp[c].append(1.0 if clamped == c else 0.0)
        if line.get('tile_cols') is not None:
            tiles.append(int(line.get('num_tiles') or 1))
    out = {'visual_tokens_per_image_mean': tokens, 'visual_tokens_per_image_max': tokens,
           'resized_megapixels_mean': megapixels, 'tiles_per_image_mean': tiles, 'clamped_frac': any_clamp,
           **{f'clamped_by_{c}_frac': v for c, v in by_clamp.items()},
           'images_per_step': [len(tokens)], 'failed_images_per_step': [len(failed)], **_video_values(videos)}
    return {k: v for k, v in out.items() if v}


def _video_values(lines: list) -> dict[str, list]:
    """The video metrics of one step's training video lines (``videos_per_step`` only where the step had one)."""
    frames, tokens, capped = [], [], []
    failed = set()
    for line in lines:
        if line.get('error'):
            failed.add((line.get('video'), line.get('video_index')))
            continue
        try:
            count, total = len(line['frame_indices']), int(line['num_tokens'])
        except (KeyError, TypeError, ValueError):
            continue
        frames.append(count)
        tokens.append(total)
        capped.append(1.0 if 'max_frames' in (line.get('clamped') or ()) else 0.0)
    if not frames and not failed:
        return {}
    return {'frames_per_video_mean': frames, 'video_tokens_per_video_mean': tokens,
            'video_tokens_per_video_max': tokens, 'videos_clamped_by_max_frames_frac': capped,
            'videos_per_step': [len(frames)], 'failed_videos_per_step': [len(failed)]}


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


# Video lines' metrics (``_video_values``): frames sampled per video, its visual tokens, how often
# FPS_MAX_FRAMES cut the frames, videos and failed videos per step. Absent from runs without video.
VIDEO_METRICS = {
    'frames_per_video_mean': MeanMetric,
    'video_tokens_per_video_mean': MeanMetric,
    'video_tokens_per_video_max': MaxMetric,
    'videos_clamped_by_max_frames_frac': MeanMetric,
    'videos_per_step': PerStepTotalMetric,
    'failed_videos_per_step': PerStepTotalMetric,
}

METRICS = {
    'visual_tokens_per_image_mean': MeanMetric,
    'visual_tokens_per_image_max': MaxMetric,
    'resized_megapixels_mean': MeanMetric,
    'tiles_per_image_mean': MeanMetric,
    'clamped_frac': MeanMetric,
    'images_per_step': PerStepTotalMetric,
    'failed_images_per_step': PerStepTotalMetric,
}


def new_metrics(device=None, clamps: Iterable[str] = tuple(Clamp)) -> dict[str, _Metric]:
    """The metric objects; one ``clamped_by_<name>_frac`` per clamp the template's family can report."""
    names = {**METRICS, **VIDEO_METRICS, **{f'clamped_by_{c}_frac': MeanMetric for c in clamps}}
    return {PREFIX + name: cls(device) for name, cls in names.items()}


def update_metrics(metrics: dict[str, _Metric], lines: Iterable[dict], *, complete: bool = True,
                   video_run: bool = False) -> None:
    """Feed one step's lines to the metrics (every step counts, even one with no image).

    ``complete=False`` (some of the step's lines are unknown: lost, not written yet, a batch that could
    not be identified) leaves the step out of the per-step counts, which would otherwise read low.
    ``video_run``: the run has had videos, so a step without one counts 0 videos.
    """
    clamps = [name[len(PREFIX) + len('clamped_by_'):-len('_frac')] for name in metrics
              if name.startswith(PREFIX + 'clamped_by_')]
    values = step_values(lines, clamps)
    if complete:
        values.setdefault('images_per_step', [0])
        values.setdefault('failed_images_per_step', [0])
        if video_run:
            values.setdefault('videos_per_step', [0])
            values.setdefault('failed_videos_per_step', [0])
    else:
        for key in ('images_per_step', 'failed_images_per_step', 'videos_per_step', 'failed_videos_per_step'):
            values.pop(key, None)
    for name, vals in values.items():
        if PREFIX + name in metrics:
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
            warn_once(f'geo_log:{method.__name__}', f'swift-ext geo_log: {method.__name__} failed ({exc!r}); '
                      'training continues without it.')
        return None
    return wrapper


class GeoLogCallback(TrainerCallback):
    """Routes `_geo` template lines into the run directory and logs `vision/` metrics."""

    def __init__(self, args=None, trainer=None):
        self.args = args
        self.trainer = trainer
        self.log_dir: str | None = None
        self.tails: tuple = ()
        self.index = StepIndex()
        self.consumed: list = []  # fingerprints of the batches the current step trained on (None: unknown)
        device = functools.partial(getattr, args, 'device', None)
        self._own_metrics: dict[str, _Metric] | None = new_metrics(device, self._clamps())
        self.metrics = self._own_metrics
        self._lost_seen = runlog.lost_records()
        self.video_run = False  # a video line was seen: steps without one count 0 videos
        self._setup()

    def _clamps(self) -> tuple:
        template = getattr(self.trainer, 'template', None)
        spec = getattr(template, 'geo_spec', None)
        family = family_of(spec.name)[0] if spec is not None else None
        return tuple(str(c) for c in getattr(family, 'clamps', tuple(Clamp)))

    @_guarded
    def _setup(self) -> None:
        self._point_at(getattr(self.args, 'output_dir', None))
        recorder().trainer = True
        store = getattr(self.trainer, 'custom_metrics', None)
        if isinstance(store, dict) and isinstance(store.get('train'), dict):
            store['train'].update(self._own_metrics)  # the same keys on every rank
            self._own_metrics = None
        self._wrap_compute_loss()
        template = getattr(self.trainer, 'template', None)
        if hasattr(template, 'geo_settings') and getattr(template, 'processor', None) is not None:
            runlog.log_settings(template.geo_settings())  # now that the run directory is known

    def _point_at(self, output_dir: str | None) -> None:
        if not output_dir:
            return
        output_dir = os.path.abspath(output_dir)
        runlog.publish_log_dir(output_dir)
        if output_dir != self.log_dir:
            self.log_dir = output_dir
            self.tails = (GeoFileTail(runlog.geometry_path(output_dir), from_end=True),
                          GeoFileTail(runlog.batches_path(output_dir), from_end=True))
            logger.info('swift-ext geo_log: image geometry goes to %s', self.tails[0].path)

    def _wrap_compute_loss(self) -> None:
        """Note, for every training micro-batch, which batch it is (its fingerprint) and at which step."""
        trainer = self.trainer
        original = getattr(trainer, 'compute_loss', None)
        if original is None or getattr(original, 'geo_wrapped', False):
            return

        @functools.wraps(original)
        def compute_loss(model, inputs, *args, **kwargs):
            if getattr(model, 'training', False):
                self._consumed_batch(inputs)
            return original(model, inputs, *args, **kwargs)
        compute_loss.geo_wrapped = True
        trainer.compute_loss = compute_loss

    @_guarded
    def _consumed_batch(self, inputs) -> None:
        decoder_key = DECODER_KEY if getattr(getattr(self.trainer, 'template', None), 'is_encoder_decoder', False) \
            else None  # as the template's collate fingerprinted it
        batch = batch_fingerprint(inputs[0] if isinstance(inputs, list) and len(inputs) == 1 else inputs, decoder_key)
        self.consumed.append(batch)
        state = getattr(self.trainer, 'state', None)
        recorder().consume(batch, None if state is None else state.global_step + 1)

    @_guarded
    def on_train_begin(self, args, state, control, **kwargs):
        self._point_at(getattr(args, 'output_dir', None))
        runlog.set_step(state.global_step + 1)
        self._wrap_log_rollout()  # GRPO builds its completion logs after the callbacks

    @_guarded
    def on_step_begin(self, args, state, control, **kwargs):
        # Lines of the step being computed carry its number as logging.jsonl will show it
        # (global_step after the step): state.global_step + 1.
        runlog.set_step(state.global_step + 1)

    @_guarded
    def on_step_end(self, args, state, control, **kwargs):
        runlog.set_step(state.global_step + 1)
        consumed, self.consumed = self.consumed, []
        if not self.tails:
            return
        for tail, add in zip(self.tails, (self.index.add_lines, self.index.add_events), strict=True):
            while True:
                new = tail.read_new()
                if not new:
                    break
                add(new)
        lines, why = [], None
        for batch in consumed:
            found = None if batch is None else self.index.batch_lines(batch)
            if found is None:
                why = why or ('a batch without input_ids to identify it' if batch is None else
                              'a batch whose image lines are not all on disk')
            else:
                lines += found
        if not consumed:
            why = 'no training batch was seen (the trainer does not call compute_loss)'
        lost = runlog.lost_records()
        if lost != self._lost_seen or any(t.missing for t in self.tails):
            why = why or 'image lines were lost (see the warning above)'
        self._lost_seen = lost
        if why:
            warn_once(f'geo_log:incomplete:{why}', f'swift-ext geo_log: vision/images_per_step and '
                      f'vision/failed_images_per_step are left out of step {state.global_step}: {why}. '
                      'Further steps like it are not warned about.')
        self.video_run = self.video_run or any(line_kind(line) == 'video' for line in lines)
        update_metrics(self.metrics, lines, complete=why is None, video_run=self.video_run)

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
            warn_once('geo_log:columns', f'swift-ext geo_log: no geometry columns for completions ({exc!r}).')
            local = {k: [None] * len(samples) for k in COMPLETION_COLUMNS}
        try:
            # Every rank gathers the same keys in the same order, as ms-swift does for 'solution'.
            for key in COMPLETION_COLUMNS:
                gathered = trainer._gather_and_flatten(local[key], flatten_level=0)
                if key not in trainer._logs:
                    trainer._logs[key] = deque(maxlen=trainer.args.generation_batch_size)
                trainer._logs[key].extend(gathered)
        except Exception as exc:
            warn_once('geo_log:gather', f'swift-ext geo_log: could not add completion columns ({exc!r}).')


def completion_geometry(samples) -> dict[str, list]:
    """Per sample: original size, resized size ('WxH', ';' between images), total tokens, image keys, and
    the row's ``image_index`` (``swift_ext.truth``; None where the row has none).

    Looked up in the geometry the `_geo` template recorded in this process when it encoded
    the sample for training; None where it recorded nothing.
    """
    settings = active_settings()
    out = {k: [] for k in COMPLETION_COLUMNS}
    for sample in samples:
        images = getattr(sample, 'images', None) or []
        extra = getattr(sample, 'extra', None) or {}
        out[truth.COMPLETION_COLUMN].append(_image_index(extra))
        limits = row_limits_key(extra.get('chat_template_kwargs'))
        geos = [STORE.get(image_key(img), limits, settings.template) if settings else None
                for img in images]
        if not geos or any(g is None for g in geos):
            for key in COMPLETION_COLUMNS:
                if key != truth.COMPLETION_COLUMN:
                    out[key].append(None)
            continue
        out['geo_original_size'].append(
            ';'.join(f'{g.original_width}x{g.original_height}' for g in geos))
        out['geo_resized_size'].append(
            ';'.join(f'{g.resized_width}x{g.resized_height}' for g in geos))
        out['geo_visual_tokens'].append(sum(g.num_tokens for g in geos))
        out['geo_image'].append(';'.join(image_key(img) for img in images))  # the log's `image` key
    return out


def _image_index(extra: dict) -> int | None:
    """The row's ``image_index`` as the rewards read it (so review draws the image they scored); None: none."""
    if extra.get(truth.IMAGE_INDEX) is None:
        return None
    try:
        return truth.image_index(extra[truth.IMAGE_INDEX])
    except truth.TruthError:
        return None


def register_callbacks() -> list[str]:
    """Add `geo_log` to ms-swift's ``callbacks_map``; a second call changes nothing."""
    from swift.callbacks import callbacks_map
    register(callbacks_map, CALLBACK_NAME, GeoLogCallback, 'callback')
    return [CALLBACK_NAME]
