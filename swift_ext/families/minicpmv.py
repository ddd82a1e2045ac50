"""MiniCPM-V 4.6 / 4.7 (``minicpmv4_6``, ``minicpmv4_7``): slices plus the source image.

The HF processor decides everything inside ``_encode`` (transformers
``models/minicpmv4_6/image_processing_minicpmv4_6.py``, shared by 4.7):

1. ``get_sliced_grid``: ``ceil(w*h / 448**2)`` slices, at most ``max_slice_nums``; of the
   grids (rows, cols) with one slice fewer, as many, or one more, the one whose log aspect
   ratio is nearest the image's (more rows on ties); none when one slice would do.
2. the source image is always resized by ``find_best_resize``: scaled to about 448**2 pixels
   when larger (or always when not sliced), each side rounded to a multiple of 56
   (patch 14 x two 2x2 merges), at least 56;
3. with a grid, the image is resized to ``get_refine_size`` (each slice a ``find_best_resize``
   with upscaling) and cut into ``rows x cols`` equal slices, row-major after the source.
Tokens per view = (h/14)(w/14)/16, or /4 with ``downsample_mode='4x'``.

ms-swift (``MiniCPMV4_6Template.init_env_args``) reads ``MAX_SLICE_NUMS`` (default 9) and
``DOWNSAMPLE_MODE`` (default ``'16x'``) from the environment and passes both to every
processor call, overriding the checkpoint's own values; slice size and patch come from the
processor. A row's ``chat_template_kwargs.max_pixels`` feeds ms-swift's pre-rescale.
The encode shows each image as ``<image>`` + source run + ``</image>``, then per slice
``<slice>`` + run + ``</slice>``, rows separated by a newline; ``target_sizes`` holds each
view's (h, w) in patches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..geometry import ImageGeometry, check_side, fitted, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec, env_int
from .encoded import encoded_rows, token_id, token_spans
from .video_hf import ProcessorSampledVideo, split_runs

# Not verified against an OpenBMB source: MiniCPM-V's own grounding is reported (third-party
# code) as <box>x1 y1 x2 y2</box> in 0-1000, a style boxes.py does not parse yet.
_SOURCE = ("ms-swift Template.norm_bbox default 'norm1000' (MiniCPMV4_6Template does not override it; "
           'grounding rows are written [(x1,y1),(x2,y2)] in 0-1000); MiniCPM-V answers '
           '<box>x1 y1 x2 y2</box> in 0-1000 per third-party reports only')
_STYLES = ('bare_list',)
MERGE_FACTOR = 4  # two successive 2x2 spatial merges: sides are multiples of patch * 4


@dataclass(frozen=True)
class MinicpmvSettings(PreprocessSettings):
    max_slice_nums: int = 9
    scale_resolution: int = 448
    patch_size: int = 14
    slice_mode: bool = True
    downsample_mode: str = '16x'

    @property
    def token_divisor(self) -> int:
        return 4 if self.downsample_mode == '4x' else 16


def ensure_divide(length: float, divisor: int) -> int:
    """transformers' ``ensure_divide``: the nearest multiple of ``divisor`` (banker's rounding), at least it."""
    return max(round(length / divisor) * divisor, divisor)


def find_best_resize(*, height: float, width: float, scale_resolution: int, patch_size: int,
                     allow_upscale: bool = False) -> tuple[int, int]:
    """``(height, width)`` of ``MiniCPMV4_6ImageProcessor.find_best_resize`` (same float steps)."""
    if (height * width > scale_resolution * scale_resolution) or allow_upscale:
        aspect_ratio = width / height
        height = int(scale_resolution / math.sqrt(aspect_ratio))
        width = int(height * aspect_ratio)
    return (ensure_divide(height, patch_size * MERGE_FACTOR), ensure_divide(width, patch_size * MERGE_FACTOR))


def get_refine_size(*, height: int, width: int, grid: tuple[int, int], scale_resolution: int,
                    patch_size: int, allow_upscale: bool = False) -> tuple[int, int]:
    """``(height, width)`` of the image the slices are cut from; ``grid`` is (rows, cols)."""
    grid_y, grid_x = grid
    refine_width = ensure_divide(width, grid_x)
    refine_height = ensure_divide(height, grid_y)
    best_height, best_width = find_best_resize(height=refine_height / grid_y, width=refine_width / grid_x,
                                               scale_resolution=scale_resolution, patch_size=patch_size,
                                               allow_upscale=allow_upscale)
    return best_height * grid_y, best_width * grid_x


def get_sliced_grid(*, height: int, width: int, max_slice_nums: int,
                    scale_resolution: int) -> tuple[int, int] | None:
    """The slice grid ``(rows, cols)`` ``get_sliced_grid`` picks, or None for no slices."""
    log_ratio = math.log(width / height)
    ratio = width * height / (scale_resolution * scale_resolution)
    multiple = min(math.ceil(ratio), max_slice_nums)
    if multiple <= 1:
        return None
    best_grid = (1, 1)
    min_error = float('inf')
    for num_slices in (multiple - 1, multiple, multiple + 1):
        if num_slices == 1 or num_slices > max_slice_nums:
            continue
        for num_rows in range(1, num_slices + 1):
            if num_slices % num_rows == 0:
                num_cols = num_slices // num_rows
                error = abs(log_ratio - math.log(num_cols / num_rows))
                if error < min_error or (error == min_error and num_rows > best_grid[0]):
                    best_grid = (num_rows, num_cols)
                    min_error = error
    return best_grid


def minicpmv_geometry(*, width: int, height: int, settings: MinicpmvSettings, name: str = 'image') -> ImageGeometry:
    """Geometry of one image as the MiniCPM-V 4.6 processor slices it (sizes after ms-swift's rescale)."""
    check_side('width', width, name)
    check_side('height', height, name)
    s, patch = settings, settings.patch_size
    grid = get_sliced_grid(height=height, width=width, max_slice_nums=s.max_slice_nums,
                           scale_resolution=s.scale_resolution) if s.slice_mode else None
    src_h, src_w = find_best_resize(height=height, width=width, scale_resolution=s.scale_resolution,
                                    patch_size=patch, allow_upscale=grid is None)
    src_tokens = (src_h // patch) * (src_w // patch) // s.token_divisor
    if grid is None:
        return ImageGeometry(original_width=width, original_height=height, resized_width=src_w,
                             resized_height=src_h, num_tokens=src_tokens)
    rows, cols = grid
    ref_h, ref_w = get_refine_size(height=height, width=width, grid=grid, scale_resolution=s.scale_resolution,
                                   patch_size=patch, allow_upscale=True)
    slice_h, slice_w = ref_h // rows, ref_w // cols
    slice_tokens = (slice_h // patch) * (slice_w // patch) // s.token_divisor
    return ImageGeometry(original_width=width, original_height=height, resized_width=ref_w, resized_height=ref_h,
                         num_tokens=src_tokens + rows * cols * slice_tokens, tile_cols=cols, tile_rows=rows,
                         num_tiles=rows * cols + 1, thumbnail=True, global_width=src_w, global_height=src_h,
                         extra=(('slice_width', slice_w), ('slice_height', slice_h)))


@register_family
class Minicpmv(ProcessorSampledVideo, Family):
    name = 'minicpmv'
    encoded_keys = ('input_ids', 'target_sizes')
    settings_cls = MinicpmvSettings
    tile_knob = 'max_slice_nums'
    env_vars = ('MAX_SLICE_NUMS', 'DOWNSAMPLE_MODE')
    templates = (
        TemplateSpec('minicpmv4_6', 'norm1000', _STYLES, coords_source=_SOURCE, model_type='minicpmv4_6',
                     boxes_trained=False),
        TemplateSpec('minicpmv4_7', 'norm1000', _STYLES, coords_source=_SOURCE, model_type='minicpmv4_7',
                     boxes_trained=False),
    )

    @classmethod
    def settings_from_env(cls, settings, env):
        max_slice_nums = env_int(env, 'MAX_SLICE_NUMS')
        if max_slice_nums is not None:
            settings = replace(settings, max_slice_nums=max_slice_nums)
        if env.get('DOWNSAMPLE_MODE'):
            settings = replace(settings, downsample_mode=env['DOWNSAMPLE_MODE'])
        return settings

    @classmethod
    def settings_from_template(cls, template, settings):
        ip = template.processor.image_processor
        # ms-swift passes its own max_slice_nums / downsample_mode to every call (environment).
        return replace(settings, max_slice_nums=int(template.max_slice_nums),
                       downsample_mode=str(template.downsample_mode),
                       scale_resolution=int(ip.scale_resolution), patch_size=int(ip.patch_size),
                       slice_mode=bool(ip.slice_mode))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        geo = minicpmv_geometry(width=width, height=height, settings=settings, name=name)
        # Every view is scaled to about scale_resolution**2 pixels: small images grow, large ones shrink.
        return fitted(geo, width=width, height=height)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        views = image_views(encoded['input_ids'], pad=token_id(template, '<|image_pad|>'),
                            image_start=token_id(template, template.processor.image_start_token),
                            slice_start=token_id(template, template.processor.slice_start_token),
                            slice_end=token_id(template, template.processor.slice_end_token))
        sizes = encoded_rows(encoded, 'target_sizes')
        if len(views) != len(predicted) or sizes is None:
            return list(predicted)
        if len(sizes) != sum(1 + sum(rows) for _, rows in views):
            return list(predicted)
        patch = template.geo_settings().patch_size
        out, first = [], 0
        for geo, (tokens, rows) in zip(predicted, views, strict=False):
            n = 1 + sum(rows)
            out.append(None if geo is None else from_views(geo, tokens, rows, sizes[first:first + n], patch))
            first += n
        return out


    # --- video: MiniCPMV4_6VideoProcessor samples up to ``max_num_frames`` (``families/video_hf.py``, with
    # ms-swift's MAX_NUM_FRAMES / STACK_FRAMES); each frame is "<image>" + a run of <|video_pad|> + "</image>"
    # (one view: VIDEO_MAX_SLICE_NUMS=1), sized by ``target_sizes_videos``; the encode writes no time.
    video_encoded_keys = ('input_ids', 'target_sizes_videos')
    video_sample_args = ('max_num_frames', 'stack_frames')
    video_header_backend = 'torchcodec'  # the processor loads the path itself (transformers' fetch_videos)

    @classmethod
    def video_frames(cls, template, encoded, ids, counts):
        sizes = encoded_rows(encoded, 'target_sizes_videos')
        runs = token_spans(ids, token_id(template, '<|video_pad|>'))
        if sizes is None or len(sizes) != len(runs):  # slices (VIDEO_MAX_SLICE_NUMS > 1): not read here
            return [None] * len(counts)
        patch = int(template.processor.video_processor.patch_size)
        out, first = [], 0
        for frames in split_runs(runs, counts):
            if frames is None:
                out.append(None)
                continue
            h, w = (int(v) for v in sizes[first])
            first += len(frames)
            out.append(((w * patch, h * patch), (len(frames), h, w), [n for _, n in frames], ()))
        return out


def image_views(input_ids, *, pad: int, image_start: int, slice_start: int, slice_end: int,
                unmarked: str = 'slice') -> list[tuple]:
    """Per image in ``input_ids``: (visual tokens, slices per row), read from the ``pad`` token runs.

    A run opened by ``<image>`` starts an image (its source view); a run opened by ``<slice>``
    is a slice of the current image, in the same row as the previous slice when the two are
    joined as ``</slice><slice>`` and in a new row otherwise (the processor puts a newline).
    A run opened by anything else is, with ``unmarked='slice'`` (MiniCPM-V 4.x), a slice (the first
    run an image); with ``unmarked='skip'`` (MiniCPM-V 2.6 / MiniCPM-o: audio, a literal ``<unk>``) not an image's.
    """
    ids = list(input_ids)
    images: list[list] = []  # [tokens, [slices per row], end of the last slice run]
    i, n = 0, len(ids)
    while i < n:
        if ids[i] != pad:
            i += 1
            continue
        start = i
        while i < n and ids[i] == pad:
            i += 1
        opener = ids[start - 1] if start else None
        if opener == image_start or (not images and unmarked == 'slice'):
            images.append([i - start, [], None])
        elif images and (opener == slice_start or unmarked == 'slice'):
            _add_slice(images[-1], ids, start, i, joined_row=opener == slice_start, slice_end=slice_end)
    return [(tokens, rows) for tokens, rows, _ in images]


def _add_slice(current: list, ids: list, start: int, end: int, *, joined_row: bool, slice_end: int) -> None:
    """Count the run ``ids[start:end]`` as a slice of ``current``, in its last row when joined to the last slice."""
    current[0] += end - start
    joined = current[2] is not None and current[2] + 2 == start and ids[current[2]] == slice_end
    if joined_row and current[1] and joined:
        current[1][-1] += 1
    else:
        current[1].append(1)
    current[2] = end


def from_views(geo: ImageGeometry, tokens: int, rows: list[int], sizes: list, patch: int) -> ImageGeometry:
    """``geo`` with the tokens, grid and view sizes the encode produced."""
    src_h, src_w = sizes[0][0] * patch, sizes[0][1] * patch
    if not rows:
        return updated(geo, num_tokens=tokens, resized_width=src_w, resized_height=src_h, tile_cols=None,
                       tile_rows=None, num_tiles=1, thumbnail=False, global_width=None, global_height=None, extra=())
    slice_h, slice_w = sizes[1][0] * patch, sizes[1][1] * patch
    cols = rows[0]
    return updated(geo, num_tokens=tokens, resized_width=slice_w * cols, resized_height=slice_h * len(rows),
                   tile_cols=cols, tile_rows=len(rows), num_tiles=1 + sum(rows), thumbnail=True,
                   global_width=src_w, global_height=src_h,
                   extra=(('slice_width', slice_w), ('slice_height', slice_h)))
