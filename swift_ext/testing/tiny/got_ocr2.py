"""Tiny GOT-OCR 2.0 (``GotOcr2ForConditionalGeneration``: a SAM-style ViT and a Qwen2 decoder).

Kept real, because geometry depends on it:

- the processor of stepfun-ai/GOT-OCR-2.0-hf: ``GotOcr2ImageProcessor`` resizing to 1024 x 1024
  (bicubic, no aspect kept), ``crop_to_patches`` off, CLIP mean/std; the ViT's patch 16 and the
  projector's two stride-2 convolutions give 1024 / 16 / 4 = 16 x 16 = 256 features, the 256
  ``<imgpad>`` tokens ms-swift's ``GOT_OCR2HfTemplate`` writes;
- the tokenizer's ids: Qwen's ``<|endoftext|>`` 151643, ``<|im_start|>`` 151644, ``<|im_end|>`` 151645,
  and GOT's ``<img>`` 151857, ``</img>`` 151858, ``<imgpad>`` 151859 (the config's
  ``image_token_index``), 151860 rows.

The ViT keeps its 1024 input and 16-pixel patches at toy widths (windowed attention, one global layer).
"""
from __future__ import annotations

from .common import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, build_tokenizer, save_model, save_processor

PARENTS = ('got_ocr2_hf',)

IMAGE_SIZE = 1024
VOCAB_SIZE = 151860
IMAGE_TOKEN_ID = 151859
SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = (
    ('<|endoftext|>', 151643, True),
    ('<|im_start|>', 151644, True),
    ('<|im_end|>', 151645, True),
    ('<img>', 151857, True),
    ('</img>', 151858, True),
    ('<imgpad>', IMAGE_TOKEN_ID, True),
)


def tokenizer():
    return build_tokenizer(SPECIAL_TOKENS, chat_template='', first_special_id=151643, eos_token='<|im_end|>',
                           pad_token='<|endoftext|>')


def config():
    import transformers as tf

    return tf.GotOcr2Config(
        vision_config=dict(hidden_size=16, output_channels=8, num_hidden_layers=2, num_attention_heads=1,
                           image_size=IMAGE_SIZE, patch_size=16, window_size=14, global_attn_indexes=(1,),
                           mlp_dim=32),
        text_config=dict(model_type='qwen2', vocab_size=VOCAB_SIZE, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=8192, tie_word_embeddings=True, bos_token_id=151643,
                         eos_token_id=151645, pad_token_id=151643),
        image_token_index=IMAGE_TOKEN_ID, image_seq_length=256, tie_word_embeddings=True)


def processor(tok):
    import transformers as tf

    image_processor = tf.GotOcr2ImageProcessor(
        do_resize=True, size={'height': IMAGE_SIZE, 'width': IMAGE_SIZE}, resample=3, crop_to_patches=False,
        min_patches=1, max_patches=12, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD, do_convert_rgb=True)
    return tf.GotOcr2Processor(image_processor=image_processor, tokenizer=tok)


def build(parent: str, out_dir: str, seed: int) -> None:
    tok = tokenizer()
    save_model('GotOcr2ForConditionalGeneration', config(), out_dir, seed, eos_token_id=151645,
               pad_token_id=151643)
    save_processor(processor(tok), tok, out_dir, parts=('image_processor',))
