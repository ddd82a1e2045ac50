"""LLaVA-1.5 through transformers (``llava1_5_hf``): one fixed CLIP view, 576 tokens.

ms-swift's ``LlavaHfTemplate._encode`` calls the checkpoint's image processor and expands each
``<image>`` to ``(H // patch) * (W // patch) + num_additional_image_tokens`` tokens of the first
image's ``pixel_values`` (H, W), minus one under ``vision_feature_select_strategy == 'default'``
(the CLS feature is dropped): 24 * 24 + 1 - 1 = 576 for llava-hf/llava-1.5-7b-hf.

The view, as transformers' ``LlavaImageProcessor._preprocess`` (and ``CLIPImageProcessor``, which
llava-hf/llava-1.5-7b-hf's ``preprocessor_config.json`` names) builds it:

1. ``do_pad`` (``LlavaImageProcessor`` only, off by default and in the llava-hf checkpoints): the
   image is padded to a square of its longest side, centred (``(longest - side) // 2`` before);
2. ``do_resize``: ``size={'shortest_edge': S}`` scales the shorter side to S and the longer to
   ``int(S * long / short)`` (``image_transforms.get_resize_output_image_size``); ``{'height', 'width'}``
   stretches to that size;
3. ``do_center_crop``: cut to ``crop_size`` at ``int((side - crop) / 2)``, after padding with zeros
   (``(crop - side) // 2`` before) any side shorter than the crop (``TorchvisionBackend.center_crop``).

The model's frame is the view (``canvas_*``): ``resized_*`` is the image content in it and
``pad_left`` / ``pad_top`` its offset, negative where the centre crop cut the image (a 640x480
photo becomes 448x336, of which the middle 336 columns are seen: ``pad_left`` -56). With
``do_pad`` the content's size and offset in the view are fractional; they are rounded to pixels
(at most half a pixel of the 336-pixel view). ``extra['cropped']`` says whether the crop cut
content off; the clamp names the resize (``geometry.fit_clamp``), as for every fixed-size family.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..geometry import GeometryError, ImageGeometry, fitted, updated
from . import register_family
from .base import Family, PreprocessSettings, TemplateSpec
from .encoded import predicted_tokens, token_runs

# llava-hf/llava-1.5-7b-hf and -13b-hf (preprocessor_config.json: CLIPImageProcessor, shortest_edge 336,
# crop 336x336, no padding; processor_config.json: patch_size 14, num_additional_image_tokens 1,
# vision_feature_select_strategy 'default').
LLAVA_VIEW = 336
LLAVA_PATCH = 14

_SOURCE = ('LLaVA-1.5 grounding data (llava_v1_5_mix665k: RefCOCO / VG) writes [x1, y1, x2, y2] as 0-1 fractions '
           'of the image padded to a square (haotian-liu/LLaVA#606); swift-ext reads them on the view the HF '
           "processor builds: that square with do_pad, else the centre-cropped 336x336. ms-swift's own grounding "
           "data for this template is 0-1000 (Template.norm_bbox='norm1000')")


@dataclass(frozen=True)
class LlavaSettings(PreprocessSettings):
    do_pad: bool = False
    do_resize: bool = True
    shortest_edge: int | None = LLAVA_VIEW  # size['shortest_edge']; None: size is resize_height x resize_width
    resize_height: int | None = None
    resize_width: int | None = None
    do_center_crop: bool = True
    crop_height: int = LLAVA_VIEW
    crop_width: int = LLAVA_VIEW
    patch_size: int = LLAVA_PATCH
    num_additional_image_tokens: int = 1
    vision_feature_select_strategy: str = 'default'


def resized_frame(*, width: int, height: int, settings: LlavaSettings) -> tuple[int, int]:
    """``(width, height)`` the resize step gives a ``width`` x ``height`` frame."""
    if settings.shortest_edge:
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(settings.shortest_edge * long / short)
        return (settings.shortest_edge, new_long) if width <= height else (new_long, settings.shortest_edge)
    return settings.resize_width, settings.resize_height


def crop_offset(side: int, crop: int) -> int:
    """Where a side's content lands in the centre crop: the zero padding before it, or minus the cut."""
    if crop > side:
        return (crop - side) // 2
    return -((side - crop) // 2)  # int((side - crop) / 2.0) of a non-negative difference


def llava_view(*, width: int, height: int, settings: LlavaSettings) -> dict:
    """The view (``canvas_*``), the content in it (``resized_*``, ``pad_*``) and the tokens."""
    frame_w, frame_h = width, height
    left, top, content_w, content_h = 0.0, 0.0, float(width), float(height)
    if settings.do_pad and width != height:
        side = max(width, height)
        left, top = (side - width) // 2, (side - height) // 2
        frame_w = frame_h = side
    if settings.do_resize:
        new_w, new_h = resized_frame(width=frame_w, height=frame_h, settings=settings)
        if not new_w or not new_h or new_w <= 0 or new_h <= 0:
            raise GeometryError(f'image {width}x{height}: the resize to {settings.shortest_edge or (new_w, new_h)} '
                                f'gives a zero side ({new_w}x{new_h}).')
        sx, sy = new_w / frame_w, new_h / frame_h
        left, top, content_w, content_h = left * sx, top * sy, content_w * sx, content_h * sy
        frame_w, frame_h = new_w, new_h
    if settings.do_center_crop:
        left += crop_offset(frame_w, settings.crop_width)
        top += crop_offset(frame_h, settings.crop_height)
        frame_w, frame_h = settings.crop_width, settings.crop_height
    drop = 1 if settings.vision_feature_select_strategy == 'default' else 0
    tokens = ((frame_h // settings.patch_size) * (frame_w // settings.patch_size)
              + settings.num_additional_image_tokens - drop)
    pad_left, pad_top = round(left), round(top)
    resized_w, resized_h = round(content_w), round(content_h)
    cropped = pad_left < 0 or pad_top < 0 or pad_left + resized_w > frame_w or pad_top + resized_h > frame_h
    return {'canvas_width': frame_w, 'canvas_height': frame_h, 'resized_width': resized_w,
            'resized_height': resized_h, 'pad_left': pad_left, 'pad_top': pad_top, 'num_tokens': tokens,
            'cropped': cropped}


@register_family
class Llava(Family):
    name = 'llava'
    settings_cls = LlavaSettings
    encoded_keys = ('input_ids', 'pixel_values')
    shape_keys = ('pixel_values',)
    templates = (
        TemplateSpec('llava1_5_hf', 'norm1', ('bare_list',), coords_source=_SOURCE, model_type='llava1_5_hf'),
    )

    @classmethod
    def settings_from_template(cls, template, settings):
        processor = template.processor
        ip = processor.image_processor
        size, crop = dict(ip.size or {}), dict(getattr(ip, 'crop_size', None) or {})
        return replace(
            settings, do_pad=bool(getattr(ip, 'do_pad', False)), do_resize=bool(ip.do_resize),
            shortest_edge=size.get('shortest_edge'), resize_height=size.get('height'), resize_width=size.get('width'),
            do_center_crop=bool(ip.do_center_crop and crop), crop_height=int(crop.get('height') or 0),
            crop_width=int(crop.get('width') or 0), patch_size=int(processor.patch_size),
            num_additional_image_tokens=int(processor.num_additional_image_tokens or 0),
            vision_feature_select_strategy=str(processor.vision_feature_select_strategy))

    @classmethod
    def resize(cls, settings, *, width, height, row_kwargs, name):
        try:
            view = llava_view(width=width, height=height, settings=settings)
        except GeometryError as exc:
            raise GeometryError(f'{name}: {exc}') from None
        cropped = view.pop('cropped')
        geo = ImageGeometry(original_width=width, original_height=height, extra=(('cropped', cropped),), **view)
        return fitted(geo, width=width, height=height)

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        pixels = encoded.get('pixel_values')
        if pixels is None:
            return list(predicted)
        # The template counts every image's tokens from the first view's shape: the runs are what the model gets.
        runs = token_runs(encoded['input_ids'], template.image_token_index, predicted_tokens(predicted))
        view_h, view_w = (int(x) for x in pixels.shape[-2:])
        out = []
        for i, geo in enumerate(predicted):
            if geo is None:
                out.append(geo)
                continue
            tokens = runs[i] if i < len(runs) else geo.num_tokens
            if (geo.canvas_width, geo.canvas_height) == (view_w, view_h):
                out.append(updated(geo, num_tokens=tokens))
            else:  # a view the settings did not predict: say what the encode shows
                out.append(updated(geo, canvas_width=view_w, canvas_height=view_h, num_tokens=tokens))
        return out
