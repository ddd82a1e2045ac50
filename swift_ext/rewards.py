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
"""
from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any, Callable, Dict, List, Optional

from .boxes import is_well_formed
from .geometry import COORDS, GeometryError, ImageGeometry, describe_source, read_image_size
from .records import STORE, active_settings, image_key, row_limits_key
from .registry import register, warn_once
from .scoring import iou_score
from .settings import PreprocessSettings, settings_for, template_parent

from swift.rewards import ORM

logger = logging.getLogger(__name__)


def resolve_settings(template: Optional[str] = None,
                     swift_max_pixels: Optional[int] = None) -> Optional[PreprocessSettings]:
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
                        row_kwargs: Optional[dict] = None) -> Optional[List[ImageGeometry]]:
    """One sample's geometries: the template's record if this process has one, else predicted.

    Returns ``None`` (with one warning per cause) when an image cannot be read.
    """
    if images is None:
        return []
    if not isinstance(row_kwargs, dict):
        row_kwargs = None
    if not isinstance(images, (list, tuple)):
        images = [images]
    limits = row_limits_key(row_kwargs)
    out = []
    for src in images:
        geo = STORE.get(image_key(src), limits, settings.template)
        if geo is None:
            try:
                w, h = read_image_size(src)
                geo, _ = settings.predict(width=w, height=h, row_kwargs=row_kwargs,
                                          name=describe_source(src))
            except (ValueError, TypeError) as exc:  # GeometryError, or a malformed row limit
                warn_once(f'reward-image:{type(exc).__name__}:{str(exc).split(":")[-1][:40]}',
                          f'{exc} The reward skips such samples (None).')
                return None
        out.append(geo)
    return out


def geometries_for_batch(kwargs: Dict[str, Any], n: int,
                         settings: Optional[PreprocessSettings]) -> List[Optional[list]]:
    """``image_geometry`` for each of ``n`` samples from a reward call's kwargs."""
    if settings is None:
        warn_once('no-settings', 'swift-ext rewards found no `_geo` template in this process '
                  'and no --template to fall back on; geometry is unavailable (None).')
        return [None] * n
    images = kwargs.get('images') or []
    row_kwargs = kwargs.get('chat_template_kwargs') or []
    return [geometry_for_images(images[i] if i < len(images) else None, settings,
                                row_kwargs[i] if i < len(row_kwargs) else None)
            for i in range(n)]


class GeoReward(ORM):
    """Base class for rewards that need image geometry.

    Subclasses implement :meth:`score` for one completion. It receives the completion,
    ``image_geometry`` (list of ImageGeometry, or ``None`` if an image was unreadable),
    ``settings`` (the template's PreprocessSettings, with ``coords`` and ``box_style``) and
    this sample's value of every dataset column (``solution``, ...). An exception inside
    ``score`` is logged once and the sample gets ``None``: it is never scored as 0.

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

    def score(self, completion: str, *, image_geometry: Optional[List[ImageGeometry]],
              settings: Optional[PreprocessSettings], **row) -> Optional[float]:
        raise NotImplementedError

    def __call__(self, completions: List[str], **kwargs) -> List[Optional[float]]:
        n = len(completions)
        settings = resolve_settings(self.template, getattr(self.args, 'max_pixels', None))
        geometries = geometries_for_batch(kwargs, n, settings)
        columns = {k: v for k, v in kwargs.items()
                   if isinstance(v, (list, tuple)) and len(v) == n}
        out = []
        for i, completion in enumerate(completions):
            row = {k: v[i] for k, v in columns.items()}
            try:
                value = self.score(completion if isinstance(completion, str) else str(completion),
                                   image_geometry=geometries[i], settings=settings, **row)
            except Exception as exc:
                warn_once(f'{type(self).__name__}:{type(exc).__name__}',
                          f'{type(self).__name__} raised {exc!r}; such samples get None.')
                value = None
            out.append(value)
        return out


# Names the convention the model answers in, for checkpoints trained to another one than
# their family's (or families with no trained box output): 'abs', 'norm1000' or 'norm1'.
COORDS_ENV = 'SWIFT_EXT_COORDS'


def answer_coords(settings: PreprocessSettings) -> str:
    """The coordinate convention rewards read boxes in: ``SWIFT_EXT_COORDS`` if set, else the template's."""
    named = os.environ.get(COORDS_ENV)
    if not named:
        return settings.coords
    if named not in COORDS:
        warn_once('coords-env', f'{COORDS_ENV}={named[:40]!r} is not one of {list(COORDS)}; '
                  f'using the template\'s own {settings.coords!r}.')
        return settings.coords
    return named


def _template_from_args(args) -> Optional[str]:
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
    and matched one-to-one (see :func:`swift_ext.scoring.iou_score`). The first image of
    a sample is the frame, unless the row has an ``image_index`` column.
    """

    def score(self, completion, *, image_geometry, settings, solution=None, image_index=0,
              **row):
        if not image_geometry or settings is None:
            return None
        if not isinstance(image_index, int) or not 0 <= image_index < len(image_geometry):
            image_index = 0
        result = iou_score(completion, solution, image_geometry[image_index], answer_coords(settings))
        if result is None:
            warn_once(f'{type(self).__name__}:bad-solution',
                      f'{type(self).__name__}: ground truth {str(solution)[:80]!r} is missing or '
                      'not a valid box list in original pixels; such samples get None.')
        return result


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


def geo_reward(name: Optional[str] = None, *, register: bool = True) -> Callable:
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


SHIPPED = {'geo_iou': GeoIoU, 'geo_iou50': GeoIoU50, 'geo_format': GeoFormat}


def register_geo_rewards() -> List[str]:
    for name, cls in SHIPPED.items():
        register_reward(name, cls)
    return list(SHIPPED)
