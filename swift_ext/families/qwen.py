"""Qwen smart_resize: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5 (and templates on the same classes).

The template resizes the image itself: ``replace_tag`` calls ``qwen_vl_utils.fetch_image``
(``smart_resize`` to a multiple of patch x merge), so the resized image is read there and
the visual tokens from ``image_grid_thw``.

Limits: ms-swift turns ``MAX_PIXELS`` / ``MIN_PIXELS`` into qwen-vl-utils'
``IMAGE_MAX_TOKEN_NUM`` / ``IMAGE_MIN_TOKEN_NUM`` (value // factor**2, only where the token
variable is unset) when the processor loads; a row's ``chat_template_kwargs``
``max_pixels`` / ``min_pixels`` go straight to ``fetch_image`` for that row.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..geometry import Clamp, GeometryError, ImageGeometry, check_side, round_within, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec, env_int, row_number
from .encoded import image_grids

# qwen-vl-utils 0.0.14 (vision_process.py): pixel limits are token counts times factor**2.
MAX_RATIO = 200
IMAGE_MIN_TOKEN_NUM = 4
IMAGE_MAX_TOKEN_NUM = 16384


@dataclass(frozen=True)
class QwenSettings(PreprocessSettings):
    patch_size: int = 14
    merge_size: int = 2
    min_pixels: int | None = None
    max_pixels: int | None = None
    max_ratio: int = 200  # qwen-vl-utils' MAX_RATIO, which ms-swift reads from the environment

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size


def smart_resize(*, width: int, height: int, factor: int = 28,
                 min_pixels: int | None = None, max_pixels: int | None = None,
                 max_ratio: float = MAX_RATIO, name: str = 'image') -> tuple[tuple[int, int], Clamp | None]:
    """qwen-vl-utils' ``smart_resize`` as ``((width, height), clamp)``, with errors instead of zeros.

    Re-implemented (not imported) so that this module needs no torch; tests pin it to
    ``qwen_vl_utils.smart_resize`` for every accepted input. ``clamp``: the limit that rescaled it.

    Example:
        >>> smart_resize(width=640, height=480)
        ((644, 476), None)
    """
    check_side('width', width, name)
    check_side('height', height, name)
    if max_pixels is None:
        max_pixels = IMAGE_MAX_TOKEN_NUM * factor ** 2
    if min_pixels is None:
        min_pixels = IMAGE_MIN_TOKEN_NUM * factor ** 2
    if max_pixels < min_pixels:
        raise GeometryError(f'{name}: `max_pixels` must be >= `min_pixels`, '
                            f'got max_pixels={max_pixels}, min_pixels={min_pixels}.')
    ratio = max(height, width) / min(height, width)
    if ratio > max_ratio:
        raise GeometryError(f'{name}: aspect ratio must be at most {max_ratio}, '
                            f'got {ratio:.1f} ({width}x{height}).')
    (w_bar, h_bar), clamp = round_within(width=width, height=height, factor=factor, min_pixels=min_pixels,
                                         max_pixels=max_pixels)
    if h_bar <= 0 or w_bar <= 0:
        raise GeometryError(f'{name}: resizing {width}x{height} under max_pixels={max_pixels} '
                            f'with factor {factor} gives a zero side ({w_bar}x{h_bar}).')
    return (w_bar, h_bar), clamp


def qwen_resize(*, width: int, height: int, patch_size: int = 14, merge_size: int = 2,
                min_pixels: int | None = None, max_pixels: int | None = None, max_ratio: float = MAX_RATIO,
                name: str = 'image') -> tuple[ImageGeometry, Clamp | None]:
    """Geometry of a Qwen2/2.5-VL (patch 14) or Qwen3-VL (patch 16) image after smart_resize, and its clamp."""
    (rw, rh), clamp = smart_resize(width=width, height=height, factor=patch_size * merge_size,
                                   min_pixels=min_pixels, max_pixels=max_pixels, max_ratio=max_ratio, name=name)
    grid = (1, rh // patch_size, rw // patch_size)
    return ImageGeometry(original_width=width, original_height=height, resized_width=rw, resized_height=rh,
                         num_tokens=grid[1] * grid[2] // merge_size ** 2, grid=grid), clamp


def qwen_geometry(*, width: int, height: int, patch_size: int = 14, merge_size: int = 2,
                  min_pixels: int | None = None, max_pixels: int | None = None,
                  max_ratio: float = MAX_RATIO, name: str = 'image') -> ImageGeometry:
    """Geometry of a Qwen2/2.5-VL (patch 14) or Qwen3-VL (patch 16) image after smart_resize.

    Example:
        >>> geo = qwen_geometry(width=640, height=480)
        >>> (geo.resized_width, geo.resized_height, geo.grid, geo.num_tokens)
        (644, 476, (1, 34, 46), 391)
    """
    return qwen_resize(width=width, height=height, patch_size=patch_size, merge_size=merge_size,
                       min_pixels=min_pixels, max_pixels=max_pixels, max_ratio=max_ratio, name=name)[0]


_JSON = ('qwen2_5_json', 'bare_list')
_QWEN3_5_SOURCE = ("ms-swift Qwen3_5Template norm_bbox='norm1000' (inherited); Qwen3.5 answers bbox_2d in 0-1000 "
                   'like Qwen3-VL')
# ms-swift's Qwen3_5EmbLoader (qwen3_5_emb, wemm_embedding) does os.environ.setdefault('IMAGE_MAX_TOKEN_NUM',
# '1800') before turning MAX_PIXELS into tokens, so MAX_PIXELS is ignored there unless the token variable is set.
_EMB_MAX_TOKENS = 1800
_EMB_DEFAULTS = {'patch_size': 16, 'max_pixels': _EMB_MAX_TOKENS * 32 ** 2}
_ENV_DEFAULTS = {'qwen3_5_emb': {'IMAGE_MAX_TOKEN_NUM': str(_EMB_MAX_TOKENS)},
                 'wemm_embedding': {'IMAGE_MAX_TOKEN_NUM': str(_EMB_MAX_TOKENS)}}


@register_family
class Qwen(Family):
    name = 'qwen'
    encoded_keys = ('image_grid_thw',)
    settings_cls = QwenSettings
    sweep_knob = 'MAX_PIXELS'
    row_max_pixels_rescales = False  # Qwen*Template._get_max_pixels ignores the row (fetch_image reads it)
    env_vars = ('MAX_PIXELS', 'MIN_PIXELS', 'IMAGE_MAX_TOKEN_NUM', 'IMAGE_MIN_TOKEN_NUM', 'MAX_RATIO')
    templates = (
        TemplateSpec('qwen2_vl', 'norm1000', ('qwen2_box_tokens',), model_type='qwen2_vl',
                     coords_source='Qwen2-VL model card: <|box_start|>(x1,y1),(x2,y2)<|box_end|> in 0-1000'),
        TemplateSpec('qvq', 'norm1000', ('qwen2_box_tokens',),
                     coords_source="QVQ is a Qwen2-VL checkpoint on ms-swift's Qwen2VLTemplate (norm_bbox='norm1000', "
                                   '<|box_start|> tokens); its own card documents no box output'),
        TemplateSpec('qwen2_5_vl', 'abs', _JSON, model_type='qwen2_5_vl',
                     coords_source='Qwen2.5-VL cookbook: bbox_2d in pixels of the resized image'),
        TemplateSpec('mimo_vl', 'abs', _JSON,
                     coords_source="MiMo-VL on ms-swift's Qwen2_5VLTemplate (norm_bbox='none'): absolute pixels of "
                                   'the resized image, as Qwen2.5-VL'),
        TemplateSpec('qwen3_vl', 'norm1000', _JSON, model_type='qwen3_vl', defaults={'patch_size': 16},
                     coords_source="Qwen3-VL cookbook; ms-swift Qwen3VLTemplate norm_bbox='norm1000'"),
        # Qwen3_5Template (Qwen3VLTemplate with Qwen3.5's token ids 248056/248057): same resize, patch 16.
        TemplateSpec('qwen3_5', 'norm1000', _JSON, model_type='qwen3_5', defaults={'patch_size': 16},
                     coords_source=_QWEN3_5_SOURCE),
        TemplateSpec('qwen3_8', 'norm1000', _JSON, model_type='qwen3_5', defaults={'patch_size': 16},
                     coords_source=_QWEN3_5_SOURCE),
        TemplateSpec('ovis_ocr2', 'norm1000', _JSON, model_type='ovis_ocr2', defaults={'patch_size': 16},
                     boxes_trained=False,
                     coords_source='no trained box output documented for OvisOCR2 (an OCR model); 0-1000 is '
                                   "ms-swift's norm_bbox for its Qwen3_5Template"),
        # Embedding templates: no completions to score, but their encodes are recorded all the same.
        TemplateSpec('qwen3_5_emb', 'norm1000', _JSON, defaults=_EMB_DEFAULTS, boxes_trained=False,
                     coords_source='no trained box output (embedding model); ' + _QWEN3_5_SOURCE),
        TemplateSpec('wemm_embedding', 'norm1000', _JSON, defaults=_EMB_DEFAULTS, boxes_trained=False,
                     coords_source='no trained box output (embedding model); ' + _QWEN3_5_SOURCE),
    )

    @classmethod
    def settings_for(cls, parent, *, env, swift_max_pixels=None, overrides=None):
        factor = cls.default_settings(parent).factor
        # Named limits (plan --min_pixels) are pixels, rounded as ms-swift rounds MAX_PIXELS.
        overrides = {k: _whole_tokens(v, factor) if k in ('max_pixels', 'min_pixels') else v
                     for k, v in dict(overrides or {}).items()}
        env = {**_ENV_DEFAULTS.get(parent, {}), **env}  # the loader's os.environ.setdefault
        return super().settings_for(parent, env=env, swift_max_pixels=swift_max_pixels, overrides=overrides)

    @classmethod
    def settings_from_env(cls, settings, env):
        factor = settings.factor
        changes = {'max_pixels': _token_pixels(factor, env_int(env, 'IMAGE_MAX_TOKEN_NUM'), env_int(env, 'MAX_PIXELS')),
                   'min_pixels': _token_pixels(factor, env_int(env, 'IMAGE_MIN_TOKEN_NUM'), env_int(env, 'MIN_PIXELS')),
                   'max_ratio': env_int(env, 'MAX_RATIO')}
        return replace(settings, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def settings_from_template(cls, template, settings):
        vp = cls.vision_process()
        ip = template.processor.image_processor
        patch = cls.fetch_patch_size(template, getattr(ip, 'patch_size', settings.patch_size))
        factor = patch * vp.SPATIAL_MERGE_SIZE
        return replace(settings, patch_size=patch, merge_size=getattr(ip, 'merge_size', settings.merge_size),
                       min_pixels=vp.IMAGE_MIN_TOKEN_NUM * factor ** 2,
                       max_pixels=vp.IMAGE_MAX_TOKEN_NUM * factor ** 2, max_ratio=vp.MAX_RATIO)

    @classmethod
    def vision_process(cls):
        """The module whose ``fetch_image`` the template resizes with (its limits are the live ones)."""
        from qwen_vl_utils import vision_process
        return vision_process

    @classmethod
    def fetch_patch_size(cls, template, patch: int) -> int:
        """The patch size ``fetch_image`` rounds with, given the processor's."""
        return patch if template.version == 'v3' else 14  # ms-swift passes image_patch_size for Qwen3 only

    @classmethod
    def with_budget(cls, settings, pixels):
        return replace(settings, max_pixels=pixels // settings.factor ** 2 * settings.factor ** 2)

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        factor = settings.factor
        min_pixels = row_number(row_kwargs, 'min_pixels', name)
        max_pixels = row_number(row_kwargs, 'max_pixels', name)
        if min_pixels is None:
            min_pixels = settings.min_pixels if settings.min_pixels is not None else IMAGE_MIN_TOKEN_NUM * factor ** 2
        if max_pixels is None:
            max_pixels = settings.max_pixels if settings.max_pixels is not None else IMAGE_MAX_TOKEN_NUM * factor ** 2
        return qwen_resize(width=width, height=height, patch_size=settings.patch_size, merge_size=settings.merge_size,
                           min_pixels=min_pixels, max_pixels=max_pixels, max_ratio=settings.max_ratio, name=name)

    reads_replace_tag = True

    @classmethod
    def replaced_size(cls, template, inputs, index):
        image = inputs.images[index]
        return tuple(image.size) if hasattr(image, 'size') else None

    @classmethod
    def handed(cls, template, encoded, entries, predicted):
        # replace_tag hands vLLM the image fetch_image resized, with do_resize False: its grid is the
        # resized size in patches, whatever vLLM's processor would have chosen itself.
        settings, out = template.geo_settings(), []
        for entry, geo in zip(entries, predicted, strict=False):
            if geo is None or entry.resized is None:
                out.append(geo)
                continue
            width, height = entry.resized
            grid = (1, height // settings.patch_size, width // settings.patch_size)
            out.append(updated(geo, resized_width=width, resized_height=height, grid=grid,
                               num_tokens=grid[1] * grid[2] // settings.merge_size ** 2))
        return out, 'handed_image'

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        grids = image_grids(encoded, len(predicted), merge_size=template.processor.image_processor.merge_size)
        if grids is None:
            return list(predicted)
        out = []
        for geo, entry, found in zip(predicted, entries, grids, strict=False):
            if geo is None or entry.resized is None or found is None:
                out.append(geo)
                continue
            grid, tokens = found
            out.append(updated(geo, resized_width=entry.resized[0], resized_height=entry.resized[1], grid=grid,
                               num_tokens=tokens))
        return out


def _token_pixels(factor: int, tokens: int | None, pixels: int | None) -> int | None:
    """A pixel limit from ``IMAGE_*_TOKEN_NUM`` (wins) or ``*_PIXELS``, as ms-swift's compat_qwen_vl_utils sets it."""
    if tokens is not None:
        return tokens * factor ** 2
    return _whole_tokens(pixels, factor)


def _whole_tokens(pixels: int | None, factor: int) -> int | None:
    return None if pixels is None else pixels // factor ** 2 * factor ** 2
