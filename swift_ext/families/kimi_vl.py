"""Kimi-VL (``kimi_vl``): MoonViT's native resolution under a patch budget, padded to the merge kernel.

ms-swift's ``KimiVLTemplate._encode`` calls the checkpoint's own image processor
(``processor.image_processor(images)``, remote code) and expands each ``<|media_pad|>`` to
``image_grid_hws[i].prod() // (merge_h * merge_w)`` tokens. That processor is
``KimiVLImageProcessor`` in ``image_processing_kimi_vl.py`` of the model repositories
(moonshotai/Kimi-VL-A3B-Instruct, -Thinking, -Thinking-2506; the same class is published as
``MoonViTImageProcessor`` in moonshotai/MoonViT-SO-400M). Its ``rescale``, reproduced here:

1. if ``(w // patch) * (h // patch) > in_token_limit``: ``scale = sqrt(in_token_limit /
   ((w // patch) * (h // patch)))`` and the image is resized (bicubic) to ``(int(w * scale),
   int(h * scale))``;
2. ``pad_input`` (every published Kimi-VL checkpoint): zero padding right and bottom to a
   multiple of ``merge_kernel_size * patch`` (28); otherwise a centre crop to a multiple of
   ``patch``;
3. a side of 512 patches or more raises ``ValueError('Exceed pos emb')``.

``image_grid_hws`` = the padded size in patches; tokens = its product // 4. The geometry's
``resized_*`` is the image content after step 1, ``canvas_*`` the padded (or cropped) frame.

Verification: ``published_code``. The processor is remote code and no encode runs offline; the
arithmetic is pinned by ``tests/unit/test_family_kimi_vl.py`` to a reference table computed with
the published ``rescale`` (``tests/data/kimi_vl/``: source, commit, licence, how it was made).

Settings: ``in_token_limit`` 4096 (Kimi-VL-A3B-Instruct / -Thinking, 0.8 MP); the 2506 card
says "3.2 million total pixels in a single image, 4X compared to the previous version", i.e.
``in_token_limit`` 16384: ``settings_from_template`` reads the live processor's value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..geometry import Clamp, GeometryError, ImageGeometry, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec
from .encoded import encoded_rows, predicted_tokens, token_id, token_runs

KIMI_PATCH_SIZE = 14
KIMI_IN_TOKEN_LIMIT = 4096  # moonshotai/Kimi-VL-A3B-Instruct
KIMI_MAX_POS_EMB = 512  # the processor refuses a side of this many patches or more

_SOURCE = ('no box syntax found in the Kimi-VL model cards or image_processing_kimi_vl.py; the GUI-grounding '
           'answers are described as 0-1 relative coordinates (families-facts), so 0-1 is the default, but '
           'geo_iou scores only in the convention named by SWIFT_EXT_COORDS')


@dataclass(frozen=True)
class KimiVLSettings(PreprocessSettings):
    patch_size: int = KIMI_PATCH_SIZE
    in_token_limit: int = KIMI_IN_TOKEN_LIMIT
    pad_input: bool = True
    merge_height: int = 2  # merge_kernel_size[0]
    merge_width: int = 2  # merge_kernel_size[1]


def kimi_rescale(*, width: int, height: int, patch_size: int = KIMI_PATCH_SIZE,
                 in_token_limit: int = KIMI_IN_TOKEN_LIMIT, pad_input: bool = True, merge_height: int = 2,
                 merge_width: int = 2) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``((content_w, content_h), (frame_w, frame_h), (offset_x, offset_y))`` of ``rescale``.

    ``content`` is the image after the patch-budget resize, ``frame`` what is patchified (padded
    right / bottom, or centre-cropped), ``offset`` where the content's origin lies in the frame
    (0 when padded, minus the crop's left / top when cropped). Pure arithmetic; a zero side is
    returned as computed (``resize`` refuses it).
    """
    w, h = width, height
    patches = (w // patch_size) * (h // patch_size)
    if patches > in_token_limit:
        scale = math.sqrt(in_token_limit / patches)
        w, h = int(w * scale), int(h * scale)
    if pad_input:
        step_h, step_w = merge_height * patch_size, merge_width * patch_size
        frame = (w + (step_w - w % step_w) % step_w, h + (step_h - h % step_h) % step_h)
        return (w, h), frame, (0, 0)
    frame = (w - w % patch_size, h - h % patch_size)
    # torchvision's center_crop: top = int(round((h - crop_h) / 2.0)), left likewise.
    return (w, h), frame, (-int(round((w - frame[0]) / 2.0)), -int(round((h - frame[1]) / 2.0)))


@register_family
class KimiVL(Family):
    name = 'kimi_vl'
    settings_cls = KimiVLSettings
    encoded_keys = ('input_ids', 'image_grid_hws')
    templates = (
        TemplateSpec('kimi_vl', 'norm1', ('bare_list',), coords_source=_SOURCE, boxes_trained=False,
                     verification='published_code'),
    )

    @classmethod
    def settings_from_template(cls, template, settings):
        ip = template.processor.image_processor
        merge = list(getattr(ip, 'merge_kernel_size', None) or (2, 2))
        return replace(settings, patch_size=int(ip.patch_size), in_token_limit=int(ip.in_token_limit),
                       pad_input=bool(ip.pad_input), merge_height=int(merge[0]), merge_width=int(merge[1]))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        patch = settings.patch_size
        (cw, ch), (fw, fh), (ox, oy) = kimi_rescale(
            width=width, height=height, patch_size=patch, in_token_limit=settings.in_token_limit,
            pad_input=settings.pad_input, merge_height=settings.merge_height, merge_width=settings.merge_width)
        if cw <= 0 or ch <= 0 or fw < patch or fh < patch:
            raise GeometryError(f"{name}: Kimi-VL's image processor turns {width}x{height} into a {fw}x{fh} frame "
                                f'(content {cw}x{ch}), less than one {patch}-pixel patch a side; it cannot encode it.')
        if fw // patch >= KIMI_MAX_POS_EMB or fh // patch >= KIMI_MAX_POS_EMB:
            raise GeometryError(f"{name}: {width}x{height} is {fw // patch}x{fh // patch} patches after Kimi-VL's "
                                f'resize; its image processor refuses a side of {KIMI_MAX_POS_EMB} patches or more '
                                "('Exceed pos emb').")
        grid_h, grid_w = fh // patch, fw // patch
        geo = ImageGeometry(original_width=width, original_height=height, resized_width=cw, resized_height=ch,
                            num_tokens=grid_h * grid_w // (settings.merge_height * settings.merge_width),
                            canvas_width=fw, canvas_height=fh, pad_left=ox, pad_top=oy,
                            extra=(('grid_h', grid_h), ('grid_w', grid_w)))
        # The patch budget is a pixel cap (in_token_limit x patch**2); padding or cropping to the patch
        # grid is the model's own rounding.
        return geo, Clamp.MAX_PIXELS if (cw, ch) != (width, height) else None

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        grids = encoded_rows(encoded, 'image_grid_hws')
        if grids is None or len(grids) != len(predicted):
            return list(predicted)
        runs = token_runs(encoded['input_ids'], token_id(template, '<|media_pad|>'), predicted_tokens(predicted))
        settings = template.geo_settings()
        out = []
        for i, (geo, (gh, gw)) in enumerate(zip(predicted, grids, strict=False)):
            if geo is None:
                out.append(None)
                continue
            gh, gw = int(gh), int(gw)
            tokens = runs[i] if len(runs) == len(predicted) else gh * gw // (settings.merge_height
                                                                            * settings.merge_width)
            out.append(updated(geo, canvas_width=gw * settings.patch_size, canvas_height=gh * settings.patch_size,
                               num_tokens=tokens, extra=(('grid_h', gh), ('grid_w', gw))))
        return out
