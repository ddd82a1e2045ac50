"""GRPO reward functions that know each image's geometry.

The reward contract (ms-swift's): a reward is called as ``reward(completions, **kwargs)``
with one list entry per sample for every dataset column, and returns one float per
completion; ``None`` means "no opinion" and becomes NaN, so the sample is left out of that
reward's mean. The class name is the log key (``rewards/<ClassName>/mean``).

:class:`GeoReward` adds ``image_geometry``: per sample, a list with one
:class:`~swift_ext.geometry.ImageGeometry` per image, in image order. It is taken from the
record the `_geo` template made while encoding this prompt in this process (PyTorch
rollout, vLLM colocate); where there is none (vLLM server mode), it is predicted from the
file header and the active template's settings. Both give the same numbers (tested).
``video_geometry`` is the same for the sample's videos (:class:`~swift_ext.geometry.VideoGeometry`
each), as the rollout's encode saw them (``swift_ext.video_rows``); ``[]`` for a sample without one.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from swift.rewards import ORM

from . import truth
from .boxes import is_well_formed
from .families import family_of
from .geometry import COORDS, ImageGeometry
from .images import classify, read_image_size
from .registry import register
from .scoring import iou_score, parse_solution
from .settings import PreprocessSettings, settings_for, template_parent
from .store import STORE, active_settings, row_limits_key
from .temporal import tiou_score
from .video_rows import rollout_mode, time_offset, videos_for_batch
from .warn import warn_once

logger = logging.getLogger(__name__)


def resolve_settings(template: str | None = None,
                     swift_max_pixels: int | None = None) -> PreprocessSettings | None:
    """The active `_geo` template's settings: the one built in this process, else the named
    template's under ms-swift's flags and environment (`MAX_PIXELS`, `MAX_NUM`, ...)."""
    settings = active_settings(template) if template else active_settings()
    if settings is None and template:
        try:
            settings = settings_for(template, swift_max_pixels=swift_max_pixels)
        except ValueError as exc:
            warn_once('settings-env', f'swift-ext rewards cannot read the settings: {exc}')
            return None
    return settings


def geometry_for_images(images: Any, settings: PreprocessSettings,
                        row_kwargs: dict | None = None) -> list[ImageGeometry] | None:
    """One sample's geometries: the template's record if this process has one, else predicted.

    Returns ``None`` (with one warning per cause) when an image cannot be read. Never raises.
    """
    if images is None:
        return []
    if not isinstance(row_kwargs, dict):
        row_kwargs = None
    if isinstance(images, (str, bytes, dict)) or not isinstance(images, (list, tuple)):
        images = [images]
    limits = row_limits_key(row_kwargs)
    out = []
    for src in images:
        info = classify(src)
        geo = STORE.get(info.key, limits, settings.template)
        if geo is None:
            try:
                w, h = read_image_size(src)
                geo, _ = settings.predict(width=w, height=h, row_kwargs=row_kwargs, name=info.name)
            except Exception as exc:  # GeometryError, a malformed row limit, anything a hostile row holds
                text = str(exc)
                warn_once(f'reward-image:{type(exc).__name__}:{text.split(":")[-1][:40]}',
                          f'{text} The reward skips such samples (None).')
                return None
        out.append(geo)
    return out


def geometries_for_batch(kwargs: dict[str, Any], n: int,
                         settings: PreprocessSettings | None) -> list[list | None]:
    """``image_geometry`` for each of ``n`` samples from a reward call's kwargs."""
    if settings is None:
        warn_once('no-settings', 'swift-ext rewards found no `_geo` template in this process '
                  'and no --template to fall back on; geometry is unavailable (None).')
        return [None] * n
    images = _column(kwargs, 'images', n)
    row_kwargs = _column(kwargs, 'chat_template_kwargs', n)
    return [geometry_for_images(images[i], settings, row_kwargs[i]) for i in range(n)]


def _column(kwargs: dict[str, Any], name: str, n: int) -> list:
    """A per-sample column as a list of ``n`` (None where it is missing, short or malformed)."""
    value = kwargs.get(name)
    if not isinstance(value, (list, tuple)):
        if value is not None:
            warn_once(f'column-shape:{name}', f'swift-ext rewards: the `{name}` column is a '
                      f'{type(value).__name__}, not a list per sample; it is ignored.')
        return [None] * n
    return [value[i] if i < len(value) else None for i in range(n)]


# Keyword names GeoReward.score takes itself; a dataset column of the same name reaches
# `score` as `dataset_<name>` (see GeoReward), so no column can make every call fail.
RESERVED = ('self', 'completion', 'image_geometry', 'video_geometry', 'settings')
COLUMN_PREFIX = 'dataset_'


def row_arguments(columns: dict[str, Any], i: int) -> dict[str, Any]:
    """Sample ``i``'s value of each column, with columns named like a reserved keyword renamed."""
    row = {}
    for name, values in columns.items():
        key = name
        while key in RESERVED or (key != name and key in columns):
            key = COLUMN_PREFIX + key
        row[key] = values[i]
    return row


class GeoReward(ORM):
    """Base class for rewards that need image geometry.

    Subclasses implement :meth:`score` for one completion. It receives the completion,
    ``image_geometry`` (list of ImageGeometry, or ``None`` if an image was unreadable),
    ``video_geometry`` (list of VideoGeometry, ``[]`` without videos, ``None`` if a video was unreadable),
    ``settings`` (the template's PreprocessSettings, with ``coords`` and ``box_style``) and
    this sample's value of every dataset column (``solution``, ...). An exception inside
    ``score`` is logged once and the sample gets ``None``: it is never scored as 0.

    A dataset column named like one of these keywords (``completion``, ``image_geometry``,
    ``settings``, ``self``) arrives as ``dataset_<name>`` instead (one warning).

    Example::

        class CenterHit(GeoReward):
            def score(self, completion, *, image_geometry, settings, solution, **row):
                geo = image_geometry[0]
                boxes = parse_boxes(completion)
                ...
    """

    def __init__(self, args=None, **kwargs):
        super().__init__(args, **kwargs)
        self.template = _template_from_args(args)

    def score(self, completion: str, *, image_geometry: list[ImageGeometry] | None,
              settings: PreprocessSettings | None, video_geometry: list | None = None, **row) -> float | None:
        raise NotImplementedError

    def __call__(self, completions: list[str], /, **kwargs) -> list[float | None]:
        # Positional-only: a dataset column named `self` or `completions` lands in kwargs.
        completions = list(completions) if isinstance(completions, (list, tuple)) else [completions]
        arguments = batch_arguments(type(self).__name__, kwargs, len(completions), self.template,
                                    getattr(self.args, 'max_pixels', None), rollout_mode(self.args))
        out = []
        for completion, row in zip(completions, arguments, strict=True):
            try:
                value = self.score(completion if isinstance(completion, str) else str(completion), **row)
            except Exception as exc:
                warn_once(f'{type(self).__name__}:{type(exc).__name__}',
                          f'{type(self).__name__} raised {exc!r}; such samples get None.')
                value = None
            out.append(value)
        return out


def batch_arguments(owner: str, kwargs: dict[str, Any], n: int, template: str | None,
                    swift_max_pixels: int | None = None, mode: str = 'transformers') -> list[dict[str, Any]]:
    """The keyword arguments ``score`` receives for each of ``n`` samples of a reward call (``kwargs``:
    ms-swift's columns, one list entry per sample): ``image_geometry``, ``video_geometry``, ``settings``
    and the sample's value of every column (renamed where it shares a name with these, see ``RESERVED``).

    ``owner`` names the reward in warnings. Never raises: a batch whose geometry cannot be had gets None.
    """
    try:
        settings = resolve_settings(template, swift_max_pixels)
        geometries = geometries_for_batch(kwargs, n, settings)
    except Exception as exc:  # never stop a GRPO step: the batch gets no geometry
        warn_once(f'{owner}:batch:{type(exc).__name__}',
                  f'{owner}: no image geometry for a batch ({exc!r}); its samples get None.')
        settings, geometries = None, [None] * n
    try:
        videos = videos_for_batch(kwargs, n, settings.template if settings is not None else template, mode=mode)
    except Exception as exc:
        warn_once(f'{owner}:videos:{type(exc).__name__}',
                  f'{owner}: no video geometry for a batch ({exc!r}); its samples get None.')
        videos = [None] * n
    columns = {k: v for k, v in kwargs.items() if isinstance(v, (list, tuple)) and len(v) == n}
    renamed = sorted(k for k in columns if k in RESERVED)
    if renamed:
        warn_once(f'reserved-columns:{",".join(renamed)}',
                  f'{owner}: dataset column(s) {renamed} share a name with an argument of '
                  f'`score`; they arrive as {[COLUMN_PREFIX + k for k in renamed]}.')
    return [{'image_geometry': geometries[i], 'video_geometry': videos[i], 'settings': settings,
             **row_arguments(columns, i)} for i in range(n)]


def score_kwargs(row: dict[str, Any], template: str, *, max_pixels: int | None = None,
                 mode: str = 'transformers') -> dict[str, Any]:
    """The keyword arguments a reward's ``score`` receives for one dataset ``row`` under ``template``.

    For unit-testing your own ``@geo_reward`` (or ``GeoReward.score``) without a trainer: the same
    code a GRPO step runs (``batch_arguments``), on a batch of one. ``row`` is a dataset row as ms-swift
    hands it to rewards (``images``, ``solution``, ``chat_template_kwargs``, ...); ``template`` a `_geo`
    template or its parent; ``max_pixels`` ms-swift's ``--max_pixels``. The environment (``MAX_PIXELS``,
    ...) applies as in a run; where this process built a `_geo` template, its settings are used, as a
    reward in the trainer would. ``mode``: ``'vllm'`` for a run with ``--use_vllm`` (video time axes).

    Example::

        kwargs = score_kwargs({'images': ['cat.png'], 'solution': [10, 20, 200, 300]}, 'qwen2_5_vl')
        assert center_hit.score('[{"bbox_2d": [50, 60, 100, 120]}]', **kwargs) == 1.0
    """
    parent = template_parent(template)  # refuses a name no family serves
    [arguments] = batch_arguments('score_kwargs', {k: [v] for k, v in row.items()}, 1, parent + '_geo',
                                  max_pixels, mode)
    return arguments


# Names the convention the model answers in, for checkpoints trained to another one than
# their family's (or families with no trained box output): 'abs', 'norm1000', 'norm1' or 'norm999'.
COORDS_ENV = 'SWIFT_EXT_COORDS'


def answer_coords(settings: PreprocessSettings) -> str | None:
    """The coordinate convention rewards read boxes in: ``SWIFT_EXT_COORDS`` if set, else the template's.

    ``None`` (with one warning) for a template whose checkpoints have no trained box output and
    no convention named: scoring then would be a guess.
    """
    named = os.environ.get(COORDS_ENV)
    if named and named not in COORDS:
        warn_once('coords-env', f'{COORDS_ENV}={named[:40]!r} is not one of {list(COORDS)}; ignored.')
        named = None
    if named:
        return named
    try:
        trained = family_of(settings.template)[1].boxes_trained
    except ValueError:
        trained = True
    if not trained:
        warn_once(f'coords-untrained:{settings.template}',
                  f'{settings.template}: these checkpoints have no trained box output, so swift-ext does not guess '
                  f'how boxes are written; set {COORDS_ENV} to abs, norm1000 or norm1 (the convention your model '
                  'was trained to answer in). Until then geo_iou gives None.')
        return None
    return settings.coords


def _template_from_args(args) -> str | None:
    name = getattr(args, 'template', None) if args is not None else None
    if isinstance(name, str):
        try:
            return template_parent(name) + '_geo'
        except ValueError:
            return None
    return None


class GeoIoU(GeoReward):
    """Grounding reward: IoU of predicted boxes against ``solution`` in original pixels.

    Boxes are read in the template's coordinate convention (absolute resized pixels for
    Qwen2.5-VL, 0-1000 for Qwen2-VL, Qwen3-VL and InternVL), mapped to the original image
    and matched one-to-one (see :func:`swift_ext.scoring.iou_score`). The frame is the image the
    row's ``image_index`` column names (the first when absent; :mod:`swift_ext.truth`).
    """

    def score(self, completion, *, image_geometry, settings, solution=None, image_index=0,
              **row):
        if not image_geometry or settings is None:
            return None
        geo = _frame_image(type(self).__name__, image_geometry, image_index)
        if geo is None:
            return None
        warn_if_outside(type(self).__name__, solution, geo)
        coords = answer_coords(settings)
        if coords is None:
            return None
        result = iou_score(completion, solution, geo, coords)
        if result is None:
            warn_once(f'{type(self).__name__}:bad-solution',
                      f'{type(self).__name__}: ground truth {str(solution)[:80]!r} is missing or '
                      'not a valid box list in original pixels; such samples get None.')
        return result


def _frame_image(reward: str, image_geometry: list, image_index: Any, kind: str = 'image') -> Any:
    """The geometry ``image_index`` names (``swift_ext.truth``'s rule); None, one warning, when it names
    no image (``kind='video'``: video)."""
    try:
        index = truth.image_index(image_index, len(image_geometry), name=f'{kind}_index', what=kind)
    except truth.TruthError as exc:
        warn_once(f'{reward}:{kind}-index-{exc.kind}', f'{reward}: {exc}; such samples get None.')
        return None
    return image_geometry[index]


# Slack for boxes drawn on the last pixel row/column (x2 == width + 1 in some tools).
OUTSIDE_SLACK = 1.0


def warn_if_outside(reward: str, solution: Any, geo: ImageGeometry) -> bool:
    """Warn once when ground truth lies outside the original image (likely 0-1000 units); True if so."""
    boxes = parse_solution(solution)
    if not boxes:
        return False
    w, h = geo.original_width, geo.original_height
    outside = [b for b in boxes if b[2] > w + OUTSIDE_SLACK or b[3] > h + OUTSIDE_SLACK]
    if not outside:
        return False
    box = [round(v, 1) for v in outside[0]]
    units = (' It looks like 0-1000 units: `solution` must be in original image pixels.'
             if all(v <= 1000 for b in boxes for v in b) else '')
    warn_once(f'{reward}:gt-outside', f'{reward}: ground truth box {box} lies outside its {w}x{h} image.'
              f'{units} Such samples are still scored (against the clipped prediction); fix the dataset '
              '(`swift-ext plan` lists the rows).')
    return True


class GeoIoU50(GeoIoU):
    """1.0 when the matched IoU reaches 0.5 (the usual detection threshold), else 0.0."""

    threshold = 0.5

    def score(self, completion, **kwargs):
        value = super().score(completion, **kwargs)
        return None if value is None else float(value >= self.threshold)


class GeoFormat(GeoReward):
    """1.0 when the completion holds a well-formed box in the family's own output style."""

    def score(self, completion, *, image_geometry, settings, **row):
        if settings is None:
            return None
        return 1.0 if is_well_formed(completion, settings.box_styles) else 0.0


def _class_name(func_name: str) -> str:
    return ''.join(p.capitalize() for p in re.split(r'[_\W]+', func_name) if p) or 'GeoCustom'


def geo_reward(name: str | None = None, *, register: bool = True) -> Callable:
    """Turn ``f(completion, *, image_geometry, settings, **row) -> float | None`` into a reward.

    The class is named after the function in CamelCase (its log key) and, with
    ``register``, added to ms-swift's ``orms`` under ``name`` (default: the function name)
    so ``--reward_funcs NAME`` finds it.
    """
    def wrap(func: Callable) -> type:
        cls_name = _class_name(func.__name__)
        cls = type(cls_name, (GeoReward,), {
            'score': staticmethod(func), '__doc__': func.__doc__, '__module__': func.__module__,
            # pickle finds a class by module + qualified name: the function's own module then
            # holds the class under that name (set below), as a class statement would.
            '__qualname__': cls_name})
        module = sys.modules.get(func.__module__)
        if module is not None and not hasattr(module, cls_name):
            setattr(module, cls_name, cls)
        if register:
            register_reward(name or func.__name__, cls)
        return cls
    return wrap


def register_reward(name: str, cls: type) -> None:
    """Add ``cls`` to ms-swift's ``orms``; the same class again is fine, another is refused."""
    from swift.rewards import orms
    register(orms, name, cls, 'reward')


class GeoTIoU(GeoReward):
    """Temporal grounding reward: temporal IoU of the interval(s) a completion states against ``solution``.

    ``solution``: ``[start, end]`` seconds of the source video, a list of them, or a JSON string of
    either (:func:`swift_ext.temporal.parse_solution_intervals`). The completion's answer forms:
    :mod:`swift_ext.temporal`. Both sides are clipped to the clip the model saw (``video_start`` ..
    ``video_end``); a completion's times are read on the time axis of the prompt that produced it
    (``SWIFT_EXT_TIME_AXIS``, see ``swift_ext.video_rows``). The video scored is the sample's first,
    unless the row has a ``video_index`` column. None where the video or the ground truth is unusable.
    """

    def score(self, completion, *, video_geometry=None, settings=None, solution=None, video_index=0, **row):
        if not video_geometry:
            return None
        geo = _frame_image(type(self).__name__, video_geometry, video_index, 'video')
        if geo is None:
            return None
        result = tiou_score(completion, solution, window=(geo.video_start, geo.video_end), offset=time_offset(geo))
        if result is None:
            warn_once(f'{type(self).__name__}:bad-solution',
                      f'{type(self).__name__}: ground truth {str(solution)[:80]!r} is missing, not [start, end] '
                      'seconds with 0 <= start < end, or outside the clip the model saw; such samples get None.')
        return result


SHIPPED = {'geo_iou': GeoIoU, 'geo_iou50': GeoIoU50, 'geo_format': GeoFormat, 'geo_tiou': GeoTIoU}


def register_geo_rewards() -> list[str]:
    for name, cls in SHIPPED.items():
        register_reward(name, cls)
    return list(SHIPPED)
