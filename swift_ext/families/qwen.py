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

from ..geometry import IMAGE_MAX_TOKEN_NUM, IMAGE_MIN_TOKEN_NUM, qwen_geometry, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec, env_int, row_number


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
    def _token_pixels(cls, settings: QwenSettings, tokens: int | None, pixels: int | None) -> int | None:
        # IMAGE_*_TOKEN_NUM wins; MAX_PIXELS only fills it when unset (ms-swift compat_qwen_vl_utils).
        if tokens is not None:
            return tokens * settings.factor ** 2
        if pixels is not None:
            return pixels // settings.factor ** 2 * settings.factor ** 2
        return None

    @classmethod
    def settings_for(cls, parent, *, env, swift_max_pixels=None, overrides=None):
        s = cls.default_settings(parent)
        env = {**_ENV_DEFAULTS.get(parent, {}), **env}  # the loader's os.environ.setdefault
        changes = {'swift_max_pixels': swift_max_pixels,
                   'max_pixels': cls._token_pixels(s, env_int(env, 'IMAGE_MAX_TOKEN_NUM'), env_int(env, 'MAX_PIXELS')),
                   'min_pixels': cls._token_pixels(s, env_int(env, 'IMAGE_MIN_TOKEN_NUM'), env_int(env, 'MIN_PIXELS')),
                   'max_ratio': env_int(env, 'MAX_RATIO')}
        overrides = dict(overrides or {})
        for key in ('max_pixels', 'min_pixels'):  # named limits are pixels, rounded like MAX_PIXELS
            if overrides.get(key) is not None:
                overrides[key] = cls._token_pixels(s, None, overrides[key])
        changes.update({k: v for k, v in overrides.items() if v is not None})
        return replace(s, **{k: v for k, v in changes.items() if v is not None or k == 'swift_max_pixels'})

    @classmethod
    def settings_from_template(cls, template, settings):
        from qwen_vl_utils import vision_process as vp
        ip = template.processor.image_processor
        patch = getattr(ip, 'patch_size', settings.patch_size)
        if template.version != 'v3':
            patch = 14  # ms-swift calls fetch_image without image_patch_size for Qwen2/2.5
        factor = patch * vp.SPATIAL_MERGE_SIZE
        return replace(settings, patch_size=patch, merge_size=getattr(ip, 'merge_size', settings.merge_size),
                       min_pixels=vp.IMAGE_MIN_TOKEN_NUM * factor ** 2,
                       max_pixels=vp.IMAGE_MAX_TOKEN_NUM * factor ** 2, max_ratio=vp.MAX_RATIO)

    @classmethod
    def with_budget(cls, settings, pixels):
        return replace(settings, max_pixels=pixels // settings.factor ** 2 * settings.factor ** 2)

    @classmethod
    def predict(cls, settings, *, width, height, row_kwargs, name):
        w, h, clamped = cls.pre_rescaled(settings, width=width, height=height, row_kwargs=row_kwargs, name=name)
        factor = settings.factor
        min_pixels = row_number(row_kwargs, 'min_pixels', name)
        max_pixels = row_number(row_kwargs, 'max_pixels', name)
        if min_pixels is None:
            min_pixels = settings.min_pixels if settings.min_pixels is not None else IMAGE_MIN_TOKEN_NUM * factor ** 2
        if max_pixels is None:
            max_pixels = settings.max_pixels if settings.max_pixels is not None else IMAGE_MAX_TOKEN_NUM * factor ** 2
        geo = qwen_geometry(width=w, height=h, patch_size=settings.patch_size, merge_size=settings.merge_size,
                            min_pixels=min_pixels, max_pixels=max_pixels, max_ratio=settings.max_ratio, name=name)
        rounded = max(factor, round(h / factor) * factor) * max(factor, round(w / factor) * factor)
        if rounded > max_pixels:
            clamped = 'max_pixels'
        elif rounded < min_pixels and clamped is None:
            clamped = 'min_pixels'
        return replace(geo, original_width=width, original_height=height), clamped

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
        grid = encoded.get('image_grid_thw')
        if grid is None:
            return list(predicted)
        # One tensor call, not one per value.
        rows = grid.tolist() if hasattr(grid, 'tolist') else [[int(x) for x in g] for g in grid]
        merge = template.processor.image_processor.merge_size ** 2
        out = []
        for i, (entry, geo) in enumerate(zip(entries, predicted, strict=False)):
            resized = entry.resized
            if geo is None or resized is None or i >= len(rows):
                out.append(geo)
                continue
            t, gh, gw = rows[i]
            out.append(updated(geo, resized_width=resized[0], resized_height=resized[1],
                               grid=(t, gh, gw), num_tokens=t * gh * gw // merge))
        return out
