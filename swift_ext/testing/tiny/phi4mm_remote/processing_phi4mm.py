"""A stand-in for microsoft/Phi-4-multimodal-instruct's ``processing_phi4mm.Phi4MMProcessor`` (swift-ext's tiny
checkpoint ships it as remote code).

It offers what ms-swift 4.6 uses of the hub processor: ``audio_processor.compression_rate`` /
``qformer_compression_rate`` / ``feat_stride`` (and the attributes its loader deletes), a ``chat_template``
class property, and ``__call__(text, images, audios)`` that turns each ``<|image_N|>`` into ``num_img_tokens``
``<|endoftext10|>`` (id 200010) and returns ``input_image_embeds``, ``image_sizes``, ``image_attention_mask``,
``num_img_tokens`` and ``input_mode``, as the hub processor does. The images go through transformers'
``Phi4MultimodalImageProcessor``, the port of the hub processor's dynamic-HD arithmetic. No audio.
"""
import re

import torch
from transformers import AutoTokenizer, Phi4MultimodalImageProcessor
from transformers.feature_extraction_utils import BatchFeature

IMAGE_PATTERN = re.compile(r'<\|image_\d+\|>')  # the hub processor's "compatible" image tags
IMAGE_TOKEN, IMAGE_TOKEN_ID = '<|endoftext10|>', 200010
VISION_MODE, LANGUAGE_MODE = 1, 0  # the hub processor's InputMode values


class NoAudio:
    """The attributes ms-swift's loader reads and deletes; the tiny checkpoint takes no audio."""

    def __init__(self):
        self.compression_rate, self.qformer_compression_rate, self.feat_stride = 8, 1, 1
        self.feature_size, self.sampling_rate, self.padding_value = 80, 16000, 0.0

    def __call__(self, *args, **kwargs):
        raise NotImplementedError('the tiny Phi-4-multimodal checkpoint takes no audio')


class Phi4MMProcessor:
    def __init__(self, image_processor, audio_processor, tokenizer):
        self.image_processor, self.audio_processor, self.tokenizer = image_processor, audio_processor, tokenizer
        # ms-swift's loader deletes the class's `chat_template` each time it loads the processor; the class is
        # loaded once per process, so a second load (tests build it again) would find nothing to delete.
        if 'chat_template' not in type(self).__dict__:
            type(self).chat_template = _CHAT_TEMPLATE

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls(Phi4MultimodalImageProcessor.from_pretrained(path), NoAudio(), AutoTokenizer.from_pretrained(path))

    @classmethod
    def register_for_auto_class(cls, auto_class='AutoProcessor'):
        pass  # AutoProcessor calls it on remote classes; nothing to register

    chat_template = property(lambda self: self.tokenizer.chat_template)

    def __call__(self, text, images=None, audios=None, return_tensors='pt', **kwargs):
        if audios:
            self.audio_processor(audios)
        found = self.image_processor(images, return_tensors='pt') if images else {}
        counts = [int(n) for n in found.get('num_img_tokens', [])]  # a list of ints, as the hub's
        ids = self.tokenizer(IMAGE_PATTERN.sub(IMAGE_TOKEN, text)).input_ids
        expanded, image = [], 0
        for token in ids:
            if token == IMAGE_TOKEN_ID:
                expanded += [token] * counts[image]
                image += 1
            else:
                expanded.append(token)
        if image != len(counts):
            raise ValueError(f'{image} image tags in the text, {len(counts)} images')
        empty = torch.tensor([])
        return BatchFeature(data={
            'input_ids': torch.tensor([expanded]), 'attention_mask': torch.ones(1, len(expanded), dtype=torch.bool),
            'input_image_embeds': found.get('image_pixel_values', empty),
            'image_sizes': found.get('image_sizes', empty),
            'image_attention_mask': found.get('image_attention_mask', empty), 'input_audio_embeds': empty,
            'audio_embed_sizes': empty, 'audio_attention_mask': None, 'num_img_tokens': counts,
            'input_mode': torch.tensor([VISION_MODE if counts else LANGUAGE_MODE])})

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)


_CHAT_TEMPLATE = Phi4MMProcessor.__dict__['chat_template']
