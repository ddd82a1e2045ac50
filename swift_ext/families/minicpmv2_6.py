"""MiniCPM-V 2.6 / 4.0 / 4.5 and MiniCPM-o 2.6 / 4.5: slices plus the source image, 64 tokens a view.

ms-swift 4.6's ``MiniCPMV2_6Template`` (``minicpmv2_6``, ``minicpmv4``, ``minicpmo``), its subclass
``MiniCPMV4_5Template`` (``minicpmv4_5``) and that one's ``MiniCPMO4_5Template`` (``minicpmo4_5``)
all call the checkpoint's own remote-code image processor, OpenBMB's ``MiniCPMVImageProcessor``
(``image_processing_minicpmv.py``; for MiniCPM-o 4.5 inside ``processing_minicpmo.py``; the copy
pinned by this family's tests is ``tests/data/minicpmv2_6/``, OpenBMB/MiniCPM-o-Demo
``MiniCPMO45/processing_minicpmo.py``). Its slicing, on the size after ms-swift's pre-rescale:

1. ``get_sliced_grid``: ``ceil(w*h / 448**2)`` slices, at most ``max_slice_nums``; of the grids
   (cols, rows) with one slice fewer, as many, or one more, the first whose log aspect ratio is
   nearest the image's (grids in order of slice count, then of columns); none when one slice would do.
2. the source image by ``find_best_resize``: scaled to about 448**2 pixels when larger (or always
   when not sliced), each side rounded to a multiple of the patch (14), at least 14;
3. with a grid, the image resized to ``get_refine_size`` (each slice a ``find_best_resize`` with
   upscaling) and cut into ``cols x rows`` equal slices, row-major after the source.

Unlike MiniCPM-V 4.6 (``minicpmv.py``: sides rounded to 56, tokens by the view's size, equal errors to
the grid with more rows), the resampler gives every view ``image_feature_size`` (64) tokens; only
``ensure_divide`` is shared code. ms-swift reads ``MAX_SLICE_NUMS``
(default: the processor's own, 9) and passes it to the processor and its placeholder; a sample with a
video uses ``VIDEO_MAX_SLICE_NUMS`` (default 1) for all its images instead, which this prediction does
not know (the encode's token runs then disagree and the record says so). The encode shows each image
as ``<image_id>i</image_id><image>`` + 64 ``<unk>`` + ``</image>``, then per slice ``<slice>`` + 64
``<unk>`` + ``</slice>``, rows separated by a newline; ``tgt_sizes`` holds each view's (h, w) in patches.
For vLLM / lmdeploy rollouts the template hands over the image and no ``max_slice_nums``: the engine's
processor then slices with the checkpoint's own value, so there the prediction holds only while
``MAX_SLICE_NUMS`` is unset or equal to it (not checked here: no engine offline).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..geometry import GeometryError, ImageGeometry, fitted, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec, env_int
from .encoded import token_id
from .minicpmv import ensure_divide, from_views
from .minicpmv import image_views as minicpmv_views

# OpenBMB documents no box output for these checkpoints (model cards, OpenBMB/MiniCPM-V docs); its
# web demos strip any <box>...</box> from answers rather than draw it.
_SOURCE = ("ms-swift Template.norm_bbox default 'norm1000' (MiniCPMV2_6Template does not override it); "
           'no grounding output documented by OpenBMB for MiniCPM-V 2.6 / 4.0 / 4.5 or MiniCPM-o 2.6 / 4.5')
_STYLES = ('bare_list',)
# Every template's geometry comes from the published remote code; ``make-tiny-model`` builds a
# checkpoint shipping that code, so ms-swift's own template encodes offline.
_SPECS = {'minicpmv2_6': 'minicpmv2_6', 'minicpmv4': 'minicpmv4', 'minicpmv4_5': 'minicpmv4_5',
          'minicpmo': 'minicpmo', 'minicpmo4_5': 'minicpmo'}


@dataclass(frozen=True)
class Minicpmv26Settings(PreprocessSettings):
    # openbmb/MiniCPM-o-4_5 preprocessor_config.json (tests/data/minicpmv2_6); MiniCPM-V 2.6 / o 2.6
    # document the same: 640 tokens (10 views x 64) for a 1344x1344 image.
    max_slice_nums: int = 9
    scale_resolution: int = 448
    patch_size: int = 14
    image_feature_size: int = 64
    slice_mode: bool = True


def find_best_resize(*, width: float, height: float, scale_resolution: int, patch_size: int,
                     allow_upscale: bool = False) -> tuple[int, int]:
    """``(width, height)`` of ``MiniCPMVImageProcessor.find_best_resize`` (same float steps)."""
    if (width * height > scale_resolution * scale_resolution) or allow_upscale:
        r = width / height
        height = int(scale_resolution / math.sqrt(r))
        width = int(height * r)
    return ensure_divide(width, patch_size), ensure_divide(height, patch_size)


def get_refine_size(*, width: int, height: int, grid: tuple[int, int], scale_resolution: int,
                    patch_size: int) -> tuple[int, int]:
    """``(width, height)`` the slices are cut from; ``grid`` is (cols, rows)."""
    grid_x, grid_y = grid
    best_w, best_h = find_best_resize(width=ensure_divide(width, grid_x) / grid_x,
                                      height=ensure_divide(height, grid_y) / grid_y,
                                      scale_resolution=scale_resolution, patch_size=patch_size, allow_upscale=True)
    return best_w * grid_x, best_h * grid_y


def get_sliced_grid(*, width: int, height: int, max_slice_nums: int, scale_resolution: int) -> tuple[int, int] | None:
    """The grid ``(cols, rows)`` ``get_sliced_grid`` picks, or None for no slices."""
    log_ratio = math.log(width / height)
    multiple = min(math.ceil(width * height / (scale_resolution * scale_resolution)), max_slice_nums)
    if multiple <= 1:
        return None
    best, min_error = (1, 1), float('inf')
    for num in (multiple - 1, multiple, multiple + 1):
        if num == 1 or num > max_slice_nums:
            continue
        for cols in range(1, num + 1):
            if num % cols == 0:
                error = abs(log_ratio - math.log(cols / (num // cols)))
                if error < min_error:  # the first of equal errors stays
                    best, min_error = (cols, num // cols), error
    return best


def minicpmv2_6_geometry(*, width: int, height: int, settings: Minicpmv26Settings,
                         name: str = 'image') -> ImageGeometry:
    """Geometry of one image as OpenBMB's MiniCPMVImageProcessor slices it (sizes after ms-swift's rescale)."""
    s = settings
    if s.max_slice_nums <= 0:  # get_sliced_images: `assert max_slice_nums > 0`
        raise GeometryError(f'{name}: MiniCPM-V slices need `max_slice_nums` (MAX_SLICE_NUMS) of at least 1, '
                            f'got {s.max_slice_nums}; the processor refuses every image.')
    per_view = s.image_feature_size
    if not s.slice_mode:  # get_sliced_images hands the image on as it is
        return ImageGeometry(original_width=width, original_height=height, resized_width=width,
                             resized_height=height, num_tokens=per_view)
    grid = get_sliced_grid(width=width, height=height, max_slice_nums=s.max_slice_nums,
                           scale_resolution=s.scale_resolution)
    src_w, src_h = find_best_resize(width=width, height=height, scale_resolution=s.scale_resolution,
                                    patch_size=s.patch_size, allow_upscale=grid is None)
    if grid is None:
        return ImageGeometry(original_width=width, original_height=height, resized_width=src_w,
                             resized_height=src_h, num_tokens=per_view)
    cols, rows = grid
    ref_w, ref_h = get_refine_size(width=width, height=height, grid=grid, scale_resolution=s.scale_resolution,
                                   patch_size=s.patch_size)
    return ImageGeometry(original_width=width, original_height=height, resized_width=ref_w, resized_height=ref_h,
                         num_tokens=per_view * (1 + cols * rows), tile_cols=cols, tile_rows=rows,
                         num_tiles=cols * rows + 1, thumbnail=True, global_width=src_w, global_height=src_h,
                         extra=(('slice_width', ref_w // cols), ('slice_height', ref_h // rows)))


@register_family
class Minicpmv26(Family):
    name = 'minicpmv2_6'
    encoded_keys = ('input_ids', 'tgt_sizes')
    settings_cls = Minicpmv26Settings
    tile_knob = 'max_slice_nums'
    env_vars = ('MAX_SLICE_NUMS',)
    templates = tuple(TemplateSpec(parent, 'norm1000', _STYLES, coords_source=_SOURCE, model_type=model_type,
                                   boxes_trained=False) for parent, model_type in _SPECS.items())

    @classmethod
    def settings_from_env(cls, settings, env):
        max_slice_nums = env_int(env, 'MAX_SLICE_NUMS')
        return settings if max_slice_nums is None else replace(settings, max_slice_nums=max_slice_nums)

    @classmethod
    def settings_from_template(cls, template, settings):
        ip = template.processor.image_processor
        # ms-swift passes MAX_SLICE_NUMS (None when unset: the processor's own) to every call.
        max_slice_nums = template.max_slice_nums if template.max_slice_nums is not None else ip.max_slice_nums
        return replace(settings, max_slice_nums=int(max_slice_nums), scale_resolution=int(ip.scale_resolution),
                       patch_size=int(ip.patch_size), image_feature_size=int(ip.image_feature_size),
                       slice_mode=bool(ip.slice_mode))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        geo = minicpmv2_6_geometry(width=width, height=height, settings=settings, name=name)
        # Every view is scaled to about scale_resolution**2 pixels: small images grow, large ones shrink.
        return fitted(geo, width=width, height=height)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        ip = template.processor.image_processor
        views = image_views(encoded['input_ids'], unk=token_id(template, ip.unk_token),
                            image_start=token_id(template, ip.im_start_token),
                            slice_start=token_id(template, ip.slice_start_token),
                            slice_end=token_id(template, ip.slice_end_token))
        sizes = view_sizes(encoded.get('tgt_sizes'))
        if len(views) != len(predicted) or sizes is None or len(sizes) != sum(1 + sum(r) for _, r in views):
            return list(predicted)
        settings = template.geo_settings()
        out, first = [], 0
        for geo, (tokens, rows) in zip(predicted, views, strict=False):
            n = 1 + sum(rows)
            if geo is not None and not settings.slice_mode:  # the image went in as it was: one view
                geo = updated(geo, num_tokens=tokens)
            elif geo is not None:
                geo = from_views(geo, tokens, rows, sizes[first:first + n], settings.patch_size)
            out.append(geo)
            first += n
        return out


def view_sizes(tgt_sizes) -> list | None:
    """The encode's ``tgt_sizes`` (a list of one ``[views, 2]`` tensor a sample) as ``[[h, w], ...]``."""
    if tgt_sizes is None:
        return None
    rows = []
    for part in tgt_sizes if isinstance(tgt_sizes, (list, tuple)) else [tgt_sizes]:
        values = part.tolist() if hasattr(part, 'tolist') else list(part)
        rows.extend(values if values and isinstance(values[0], list) else ([values] if values else []))
    return rows


def image_views(input_ids, *, unk: int, image_start: int, slice_start: int, slice_end: int) -> list[tuple]:
    """Per image in ``input_ids``: (visual tokens, slices per row), read from the ``<unk>`` runs (see
    :func:`~swift_ext.families.minicpmv.image_views`); runs opened by anything else (MiniCPM-o's audio, a literal
    ``<unk>`` in the text) are not images'.
    """
    return minicpmv_views(input_ids, pad=unk, image_start=image_start, slice_start=slice_start,
                          slice_end=slice_end, unmarked='skip')
