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

import re
import sys
from dataclasses import dataclass, replace

from .. import video
from ..geometry import Clamp, GeometryError, ImageGeometry, check_side, patch_grid, round_within, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec, VideoFound, env_int, row_number
from .common import HandsResizedImage
from .encoded import encoded_rows, image_grids, token_id, token_spans, tolist

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
    return patch_grid(width=width, height=height, resized_width=rw, resized_height=rh, patch_size=patch_size,
                      merge_size=merge_size), clamp


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
# ms-swift's template `version` per parent (how replace_tag fetches a video and how the model is told time),
# and the loader's own os.environ.setdefault for video (Qwen3_5EmbLoader: FPS=1, FPS_MAX_FRAMES=64).
VIDEO_VERSIONS = {'qwen2_vl': 'v2', 'qvq': 'v2', 'qwen2_5_vl': 'v2_5', 'mimo_vl': 'v2_5', 'qwen3_vl': 'v3',
                  'qwen3_5': 'v3', 'qwen3_8': 'v3', 'ovis_ocr2': 'v3', 'qwen3_5_emb': 'v3', 'wemm_embedding': 'v3',
                  'qwen2_5_omni': 'omni_v2_5', 'qwen3_omni': 'omni_v3'}
_VIDEO_ENV_DEFAULTS = {'qwen3_5_emb': {'FPS': '1', 'FPS_MAX_FRAMES': '64'},
                       'wemm_embedding': {'FPS': '1', 'FPS_MAX_FRAMES': '64'}}


@register_family
class Qwen(HandsResizedImage, Family):
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

    vision_module = 'qwen_vl_utils.vision_process'  # its name in sys.modules (patched by ms-swift's loader)

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

    # --- video: the arithmetic is swift_ext.video's (qwen-vl-utils' fetch_video and the processors) ----------
    video_geometry = True
    video_support = 'header_and_encode'
    video_encoded_keys = ('video_grid_thw', 'second_per_grid_ts', 'video_second_per_grid', 'input_ids')

    @classmethod
    def video_settings(cls, parent, *, template=None, env=None):
        return _video_settings(cls, parent, template, env)

    @classmethod
    def predict_video(cls, parent, settings, *, width, height, total_frames, video_fps, row_kwargs, mode, name):
        return video.predict_video_geometry(width=width, height=height, total_frames=total_frames,
                                            video_fps=video_fps, version=VIDEO_VERSIONS[parent], mode=mode,
                                            settings=settings, row_kwargs=row_kwargs, name=name)

    @classmethod
    def predict_video_frames(cls, parent, settings, *, sizes, row_kwargs, mode, name):
        return video.predict_image_list_geometry(sizes=sizes, version=VIDEO_VERSIONS[parent], mode=mode,
                                                 settings=settings, row_kwargs=row_kwargs, name=name)

    @classmethod
    def replaced_video(cls, template, inputs, index):
        return _replaced_video(template, inputs, index)

    @classmethod
    def actual_video(cls, template, encoded, entries, predicted, mode):
        return _actual_video(cls, template, encoded, entries, predicted, mode)

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


# --- video ------------------------------------------------------------------------------------------------
# The Qwen templates fetch the video in replace_tag (qwen_vl_utils.fetch_video; qwen_omni_utils' for Omni):
# after it, ``inputs.videos[index]`` is the sampled, resized T x C x H x W tensor (a (tensor, metadata) pair
# for Qwen3-VL in vLLM mode), the sample rate went to ``mm_processor_kwargs['fps']`` (Qwen2.5-VL, Omni)
# and the reader's metadata (frame indices, fps) to ``mm_processor_kwargs['video_metadata']`` (Qwen3-VL).
def _replaced_video(template, inputs, index) -> VideoFound | None:
    handed = inputs.videos[index]
    meta = None
    if isinstance(handed, tuple) and len(handed) == 2:
        handed, meta = handed
    shape = getattr(handed, 'shape', None)
    if shape is None or len(shape) != 4:
        return None
    kwargs = inputs.mm_processor_kwargs or {}
    if meta is None and template.version == 'v3':
        metas = kwargs.get('video_metadata') or [None]
        meta = metas[-1]
    fps = kwargs.get('fps')
    sample_fps = fps[-1] if isinstance(fps, list) and fps else fps if isinstance(fps, (int, float)) else None
    meta = meta if isinstance(meta, dict) else {}
    indices = meta.get('frames_indices')
    return VideoFound(num_frames=int(shape[0]), width=int(shape[3]), height=int(shape[2]),
                      sample_fps=None if sample_fps is None else float(sample_fps),
                      frame_indices=None if indices is None else tuple(int(i) for i in indices),
                      video_fps=meta.get('fps'), clip_frames=meta.get('total_num_frames'))


_STAMP = re.compile(r'<[0-9.]+ seconds>')


def _stamp_text(template, ids: list, runs: list, steps: list[int]) -> list[list[str]]:
    """Per video, the ``<t seconds>`` text the encode wrote before each of its steps' token runs."""
    out, run = [], 0
    for count in steps:
        stamps = []
        for _ in range(count):
            if run >= len(runs):
                break
            start = runs[run][0]
            before = runs[run - 1][0] + runs[run - 1][1] if run else max(0, start - 32)
            found = _STAMP.findall(template.tokenizer.decode(ids[max(before, start - 32):start]))
            stamps.append(found[-1] if found else '')
            run += 1
        out.append(stamps)
    return out


def _video_settings(cls, parent, template=None, env=None) -> video.VideoSettings:
    """The live template's module; without one, the module ms-swift patched in this process (unless an
    ``env`` is named), else the environment read as ms-swift's loader reads it."""
    if template is not None:
        patch = cls.fetch_patch_size(template, template.processor.image_processor.patch_size)
        return video.settings_of_module(cls.vision_process(), patch_size=patch)
    patch = video.QWEN_VERSIONS[VIDEO_VERSIONS[parent]]
    module = sys.modules.get(cls.vision_module)
    if env is None and getattr(module, '_patch', False):
        return video.settings_of_module(module, patch_size=patch)
    return video.video_settings(patch_size=patch, env=env, defaults=_VIDEO_ENV_DEFAULTS.get(parent))


def _actual_video(cls, template, encoded, entries, predicted, mode) -> tuple[list, str]:
    version, settings = VIDEO_VERSIONS[template.geo_spec.parent], template.geo_video_settings()
    engine = mode in ('vllm', 'lmdeploy', 'sglang')
    grids = None if engine else encoded_rows(encoded, 'video_grid_thw')
    spg = encoded_rows(encoded, 'second_per_grid_ts') or encoded_rows(encoded, 'video_second_per_grid')
    stamps = None
    if version == 'v3' and grids and encoded.get('input_ids') is not None:
        ids = tolist(encoded['input_ids'])
        runs = token_spans(ids, token_id(template, '<|video_pad|>'))
        stamps = _stamp_text(template, ids, runs, [int(g[0]) for g in grids])
    out = []
    for i, (geo, entry) in enumerate(zip(predicted, entries, strict=False)):
        found = entry.found
        if geo is None or found is None:
            out.append(geo)
            continue
        indices = found.frame_indices
        if indices is not None and not geo.image_list and mode == 'vllm':  # ms-swift rebased them: undo it
            base = round(geo.timestamp_origin * geo.video_fps)
            indices = tuple(j + base for j in indices)
        if geo.image_list:
            indices = None  # fetch_video's are 0..n-1 over the padded list, as predicted
        grid = grids[i] if grids and i < len(grids) else None
        out.append(video.with_observed(
            geo, version=version, mode=mode, settings=settings, width=found.width, height=found.height,
            frame_indices=indices if indices is not None and len(indices) == found.num_frames else None,
            sample_fps=found.sample_fps, grid=grid,
            timestamps=stamps[i] if stamps and i < len(stamps) else None,
            second_per_grid_ts=spg[i] if spg and i < len(spg) and not engine else None))
    return out, 'handed_video' if engine else 'encode'


class FetchImageOnly(Qwen):
    """Qwen's ``fetch_image`` resize without Qwen's loading (dots.ocr, LLaVA-OneVision-1.5): the loader sets and
    reads no environment variable for images (the base class's settings, no MAX_PIXELS rounding), and the
    template passes ``fetch_image`` no patch size, so its default, 14. Not a family by itself."""

    @classmethod
    def settings_for(cls, parent, *, env, swift_max_pixels=None, overrides=None):
        return super(Qwen, cls).settings_for(parent, env=env, swift_max_pixels=swift_max_pixels, overrides=overrides)

    @classmethod
    def settings_from_env(cls, settings, env):
        return settings

    @classmethod
    def fetch_patch_size(cls, template, patch):
        return 14
