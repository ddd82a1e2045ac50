"""PaliGemma 1 and 2 (``paligemma``): every image stretched to the checkpoint's square; boxes as location tokens.

The HF processor decides the size inside the template's ``_encode``: ms-swift's
``PaliGemmaTemplate`` calls the ``PaliGemmaProcessor``, whose ``SiglipImageProcessor`` resizes to
``size`` (224, 448 or 896 square, by checkpoint) without keeping the aspect ratio; the template
writes ``image_seq_length`` ``<image>`` tokens and a ``<bos>`` per image (256, 1024 or 4096: SigLIP's
14-pixel patches, no pooling). No environment variable is read.

ms-swift 4.6.0 trains it with SFT; its GRPO stops after the first rollout's rewards: the rollout log
(``GRPOTrainer._apply_chat_template_to_messages_list``) re-encodes each prompt alone in train mode, and
``PaliGemmaTemplate._encode`` then searches labels that are all -100 with ``upper_bound``, which reads one
past the end (``IndexError``). The `_geo` template keeps the parent's behaviour, that failure included.

Boxes (``bins1024``, style ``paligemma_loc``): ``<locY1><locX1><locY2><locX2> label``, four-digit
location tokens 0-1023 over that square, y before x. A location is ``round(v * 1023)`` of the side
fraction ``v``, decoded as ``bin / 1023``: big_vision's PaliGemma training op
(``big_vision/pp/proj/paligemma/segmentation.py``, ``refcoco_mask2str``) and evaluator
(``big_vision/evaluators/proj/paligemma/transfers/segmentation.py``); the square is a stretch of the
whole image, so the fraction is the same in the file. Google's detection notebooks divide by 1024
instead: at most a thousandth of a side apart.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..geometry import updated
from . import register_family
from .base import TemplateSpec
from .common import StretchedFamily, StretchedSettings
from .encoded import predicted_tokens, template_memo, token_runs

# google/paligemma-3b-pt-224 (the first checkpoint ms-swift registers for `paligemma`); -448 / -896
# checkpoints are read from their processor (settings_from_template).
IMAGE_SIZE = 224
TOKENS_PER_IMAGE = 256

_SOURCE = ("big_vision's PaliGemma ops: `<locY1><locX1><locY2><locX2>`, round(v * 1023) of the square input, "
           'y before x (pp/proj/paligemma/segmentation.py refcoco_mask2str; decoded as bin / 1023 by '
           'evaluators/proj/paligemma/transfers/segmentation.py); the `detect` task of the PaliGemma model card')


@dataclass(frozen=True)
class PaliGemmaSettings(StretchedSettings):
    image_width: int = IMAGE_SIZE
    image_height: int = IMAGE_SIZE
    tokens_per_image: int = TOKENS_PER_IMAGE


@register_family
class PaliGemma(StretchedFamily):
    name = 'paligemma'
    encoded_keys = ('input_ids', 'pixel_values')
    shape_keys = ('pixel_values',)
    settings_cls = PaliGemmaSettings
    templates = (
        TemplateSpec('paligemma', 'bins1024', ('paligemma_loc',), coords_source=_SOURCE, model_type='paligemma'),
    )

    @classmethod
    def settings_from_template(cls, template, settings):
        processor = template.processor
        size = processor.image_processor.size
        return replace(settings, image_width=int(size['width']), image_height=int(size['height']),
                       tokens_per_image=int(processor.image_seq_length))

    @classmethod
    def actual(cls, template, encoded, entries, predicted):
        pixels = encoded.get('pixel_values')
        if pixels is None:  # vLLM: the engine's processor makes them
            return list(predicted)
        image_token = template_memo(template, 'paligemma.image_token', lambda: template.processor.image_token_id)
        runs = token_runs(encoded['input_ids'], image_token, predicted_tokens(predicted))
        height, width = (int(x) for x in pixels.shape[-2:])
        return [geo if geo is None else updated(geo, resized_width=width, resized_height=height,
                                                num_tokens=runs[i] if i < len(runs) else geo.num_tokens)
                for i, geo in enumerate(predicted)]
