"""GOT-OCR 2.0, transformers' class (``got_ocr2_hf``): every image stretched to 1024 x 1024, 256 tokens.

ms-swift's ``GOT_OCR2HfTemplate`` writes ``<img>`` + 256 ``<imgpad>`` + ``</img>`` per image and keeps
the images themselves in the encode (``images``, after ms-swift's pre-rescale); its ``data_collator``
calls the ``GotOcr2Processor`` on them, whose ``GotOcr2ImageProcessor`` resizes each to ``size``
(1024 x 1024, bicubic, no aspect kept). ``crop_to_patches`` is off whatever the checkpoint's image
processor says: the processor's own kwargs defaults (``GotOcr2ProcessorKwargs``) pass
``crop_to_patches=False`` and win. The 256 tokens are the ViT's 64 x 64 patches after the projector's
two stride-2 convolutions. So the encode shows the token runs; the pixels appear only in the collated
batch. No environment variable is read.

No box output: GOT-OCR 2.0 takes a box as *input* (``[x1, y1, x2, y2] OCR:`` prompts, 0-1000 by
transformers' ``preprocess_box_annotation``) and answers with text.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..geometry import updated
from . import register_family
from .base import untrained_spec
from .common import StretchedFamily, StretchedSettings
from .encoded import predicted_tokens, template_memo, token_runs

# stepfun-ai/GOT-OCR-2.0-hf's preprocessor_config.json; 256 is hard-coded by ms-swift's template.
IMAGE_SIZE = 1024
TOKENS_PER_IMAGE = 256

_SOURCE = ('no box output: GOT-OCR 2.0 reads a box as input (`[x1, y1, x2, y2] OCR:` prompts, 0-1000 by '
           "transformers' preprocess_box_annotation) and answers with text; closest default: ms-swift "
           "Template.norm_bbox='norm1000'")


@dataclass(frozen=True)
class GotOcr2Settings(StretchedSettings):
    image_width: int = IMAGE_SIZE
    image_height: int = IMAGE_SIZE
    tokens_per_image: int = TOKENS_PER_IMAGE


@register_family
class GotOcr2(StretchedFamily):
    name = 'got_ocr2'
    encoded_keys = ('input_ids',)
    settings_cls = GotOcr2Settings
    templates = (untrained_spec('got_ocr2_hf', coords_source=_SOURCE, model_type='got_ocr2_hf'),)

    @classmethod
    def settings_from_template(cls, template, settings):
        size = template.processor.image_processor.size
        return replace(settings, image_width=int(size['width']), image_height=int(size['height']))

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        pad = template_memo(template, 'got_ocr2.image_token', lambda: template.processor.image_token_id)
        runs = token_runs(encoded['input_ids'], pad, predicted_tokens(predicted))
        return [geo if geo is None or i >= len(runs) else updated(geo, num_tokens=runs[i])
                for i, geo in enumerate(predicted)]
