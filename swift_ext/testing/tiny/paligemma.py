"""Tiny PaliGemma (``PaliGemmaForConditionalGeneration``: a SigLIP tower and a Gemma decoder).

Kept real, because geometry and boxes depend on it:

- the processor of google/paligemma-3b-pt-224 (the first checkpoint ms-swift registers for
  ``paligemma``): ``SiglipImageProcessor`` resizing to 224 x 224 (bicubic, no aspect kept), mean and
  std 0.5, ``image_seq_length`` 256 (SigLIP patch 14: 16 x 16 patches, no pooling);
- the tokenizer's ids: Gemma's ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3, the location tokens
  ``<loc0000>`` ... ``<loc1023>`` at 256000-257023 and the segmentation tokens ``<seg000>`` ...
  ``<seg127>`` at 257024-257151 (transformers' ``PaliGemmaProcessor.EXTRA_TOKENS``, in that order),
  ``<image>`` at 257152 (the config's ``image_token_index``), 257216 rows.

The tokenizer is a byte-level BPE (``Qwen2Tokenizer`` class), not Gemma's SentencePiece: only the ids
and the named ``image_token`` the processor reads matter. The widths are toy ones (Gemma's 257k
vocabulary is most of the checkpoint).
"""
from __future__ import annotations

from .common import save_model, save_processor, tokenizer_around

PARENTS = ('paligemma',)

IMAGE_SIZE = 224
PATCH_SIZE = 14
IMAGE_SEQ_LENGTH = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 256
VOCAB_SIZE = 257216
IMAGE_TOKEN_ID = 257152
FIRST_LOC_ID = 256000
TEXT_HIDDEN = 16

SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = (
    ('<pad>', 0, True), ('<eos>', 1, True), ('<bos>', 2, True), ('<unk>', 3, True),
) + tuple((f'<loc{i:0>4}>', FIRST_LOC_ID + i, False) for i in range(1024)) \
  + tuple((f'<seg{i:0>3}>', FIRST_LOC_ID + 1024 + i, False) for i in range(128)) \
  + (('<image>', IMAGE_TOKEN_ID, True),)


def tokenizer():
    return tokenizer_around(SPECIAL_TOKENS, chat_template='', unk_token='<unk>', bos_token='<bos>',
                            eos_token='<eos>', pad_token='<pad>', extra_special_tokens={'image_token': '<image>'})


def config():
    import transformers as tf

    return tf.PaliGemmaConfig(
        text_config=dict(model_type='gemma', vocab_size=VOCAB_SIZE, hidden_size=TEXT_HIDDEN,
                         intermediate_size=2 * TEXT_HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=8, pad_token_id=0, eos_token_id=1, bos_token_id=2),
        vision_config=dict(model_type='siglip_vision_model', hidden_size=16, intermediate_size=32,
                           num_hidden_layers=1, num_attention_heads=1, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE,
                           projection_dim=TEXT_HIDDEN),
        projection_dim=TEXT_HIDDEN, image_token_index=IMAGE_TOKEN_ID, tie_word_embeddings=True)


def processor(tok):
    import transformers as tf

    image_processor = tf.SiglipImageProcessor(
        do_resize=True, size={'height': IMAGE_SIZE, 'width': IMAGE_SIZE}, resample=3, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    image_processor.image_seq_length = IMAGE_SEQ_LENGTH
    return tf.PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)


def build(parent: str, out_dir: str, seed: int) -> None:
    tok = tokenizer()
    save_model('PaliGemmaForConditionalGeneration', config(), out_dir, seed, eos_token_id=1, pad_token_id=0)
    save_processor(processor(tok), tok, out_dir, parts=('image_processor',))
