"""Florence-2 (``florence``): an encoder-decoder; every image stretched to 768 x 768; boxes as ``<loc_N>`` bins.

ms-swift's ``FlorenceTemplate`` (an encoder-decoder template: ``input_ids`` is the encoder's prompt,
``labels`` the decoder's answer) turns a task token into its prompt with the processor's
``_construct_prompts`` and calls the image processor itself (``processor.image_processor(images)``):
a ``CLIPImageProcessor`` resizing to ``size`` (768 x 768, bicubic, no aspect kept, no crop). The prompt
holds no image token: the model puts its ``image_seq_length`` image features (577: the DaViT's 24 x 24
map at stride 32, plus one pooled feature) before it, so the count is read from the processor, and the
encode shows only ``pixel_values``. No environment variable is read.

ms-swift 4.6 with transformers 5.19 encodes for Florence-2 but cannot train it: its ``FlorenceLoader``
loads through ``AutoModelForCausalLM``, which refuses transformers' native ``Florence2Config``
(florence-community checkpoints), the microsoft/Florence-2-* hub code fails to build its config under
transformers 5 (``Florence2LanguageConfig`` has no ``forced_bos_token_id``), and the template's
``_post_encode`` calls ``_encode_image`` / ``_merge_input_ids_with_image_features``, which only that
hub code defines.

Boxes (``bins1000``, style ``florence_loc``): ``label<loc_x1><loc_y1><loc_x2><loc_y2>``, bins 0-999 of the
768 square, x before y: transformers' ``Florence2PostProcessor`` quantizes ``floor(x / side * 1000)``
(clipped to 999) and decodes a bin to its centre, ``(bin + 0.5) * side / 1000``, of the image it is
given (ms-swift passes the file's size: the square is a stretch of the whole image, so bins are the
same fractions of it). ms-swift's own grounding rows for Florence write ``<loc_{round(x / side * 1000)}>``
(its ``norm1000``): rounding, not the flooring of the quantizer, and ``<loc_1000>`` at the far edge.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..geometry import updated
from . import register_family
from .base import TemplateSpec
from .common import StretchedFamily, StretchedSettings

# florence-community/Florence-2-base and -large (the native conversions of microsoft/Florence-2-*).
IMAGE_SIZE = 768
TOKENS_PER_IMAGE = 577

_SOURCE = ("transformers' Florence2PostProcessor (models/florence2/processing_florence2.py): "
           '`<loc_x1><loc_y1><loc_x2><loc_y2>`, bins floor(x / side * 1000) clipped to 0-999, decoded to bin '
           'centres; the FLD-5B region annotations Florence-2 was trained on')


@dataclass(frozen=True)
class FlorenceSettings(StretchedSettings):
    image_width: int = IMAGE_SIZE
    image_height: int = IMAGE_SIZE
    tokens_per_image: int = TOKENS_PER_IMAGE


@register_family
class Florence(StretchedFamily):
    name = 'florence'
    encoded_keys = ('input_ids', 'pixel_values')
    shape_keys = ('pixel_values',)
    settings_cls = FlorenceSettings
    templates = (
        TemplateSpec('florence', 'bins1000', ('florence_loc',), coords_source=_SOURCE, model_type='florence'),
    )

    @classmethod
    def settings_from_template(cls, template, settings):
        processor = template.processor
        size = dict(processor.image_processor.size)
        if 'height' not in size or 'width' not in size:  # a CLIP `shortest_edge` resize keeps the aspect
            raise ValueError(f"florence_geo: Florence-2's image processor resizes to a fixed `size` "
                             f"{{'height', 'width'}}; this checkpoint's is {size}, which swift-ext does not model.")
        return replace(settings, image_width=int(size['width']), image_height=int(size['height']),
                       tokens_per_image=int(processor.num_image_tokens))

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        pixels = encoded.get('pixel_values')
        if pixels is None:
            return list(predicted)
        height, width = (int(x) for x in pixels.shape[-2:])
        return [geo if geo is None else updated(geo, resized_width=width, resized_height=height) for geo in predicted]
