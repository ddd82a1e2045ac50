"""Tiny Florence-2 (``Florence2ForConditionalGeneration``, transformers' native class): BART + DaViT.

Kept real, because geometry and boxes depend on it:

- the processor of florence-community/Florence-2-base / -large (the native conversions of
  microsoft/Florence-2-*): ``CLIPImageProcessor`` resizing to 768 x 768 (bicubic, no aspect kept, no
  crop), ``image_seq_length`` 577 (a 24 x 24 feature map after the DaViT's stride 32, plus one pooled
  token);
- the tokenizer's ids: BART's ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>`` 50264, then
  Florence-2's added special tokens from 50265, in the order its processor adds them: ``<od>``, ``</od>``,
  ``<ocr>``, ``</ocr>``, ``<loc_0>`` ... ``<loc_999>`` (50269-51268), twenty task tokens, and ``<image>`` at
  51289 (``Florence2Config``'s default ``image_token_id``).

The DaViT keeps its four stages with stride 4, 2, 2, 2 (so a 768 image still gives 24 x 24 features)
at toy widths. The tokenizer is a byte-level BPE (``BartTokenizer`` class, as the real one).
"""
from __future__ import annotations

from .common import save_model, save_processor, vocab_around

PARENTS = ('florence',)

IMAGE_SIZE = 768
IMAGE_SEQ_LENGTH = 577
TEXT_HIDDEN = 16
LOC_BINS = 1000
FIRST_ADDED_ID = 50265
_TASK_TOKENS = ('<cap>', '</cap>', '<ncap>', '</ncap>', '<dcap>', '</dcap>', '<grounding>', '</grounding>',
                '<seg>', '</seg>', '<sep>', '<region_cap>', '</region_cap>', '<region_to_desciption>',
                '</region_to_desciption>', '<proposal>', '</proposal>', '<poly>', '</poly>', '<and>')
_ADDED = (('<od>', '</od>', '<ocr>', '</ocr>') + tuple(f'<loc_{i}>' for i in range(LOC_BINS)) + _TASK_TOKENS
          + ('<image>',))
SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = (
    ('<s>', 0, True), ('<pad>', 1, True), ('</s>', 2, True), ('<unk>', 3, True), ('<mask>', 50264, True),
) + tuple((token, FIRST_ADDED_ID + i, True) for i, token in enumerate(_ADDED))  # added as special tokens
IMAGE_TOKEN_ID = FIRST_ADDED_ID + len(_ADDED) - 1  # 51289
VOCAB_SIZE = IMAGE_TOKEN_ID + 1
# The parse tasks of the checkpoints' post-processor (the task a prompt asks for picks one; ms-swift's decode runs
# it); the phrase-grounding list of banned words is left empty here.
POST_PROCESSOR_CONFIG = {
    'ocr': {'PATTERN': r'(.+?)' + r'<loc_(\d+)>' * 8, 'AREA_THRESHOLD': 0.0},
    'phrase_grounding': {'banned_grounding_tokens': []},
    **{task: {} for task in ('pure_text', 'description_with_bboxes', 'description_with_polygons', 'polygons',
                             'bboxes', 'description_with_bboxes_or_polygons')},
}


def tokenizer():
    from tokenizers import AddedToken
    from transformers import BartTokenizer

    vocab, merges = vocab_around(SPECIAL_TOKENS)
    tok = BartTokenizer(vocab=vocab, merges=merges, model_max_length=1024, errors='replace',
                        extra_special_tokens={'image_token': '<image>'})
    # Already in the vocabulary, so they keep their ids; this only marks them unsplittable.
    tok.add_tokens([AddedToken(token, special=special, normalized=False) for token, _, special in SPECIAL_TOKENS])
    return tok


def config():
    import transformers as tf

    text = dict(model_type='bart', vocab_size=VOCAB_SIZE, d_model=TEXT_HIDDEN, encoder_layers=1, decoder_layers=1,
                encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * TEXT_HIDDEN,
                decoder_ffn_dim=2 * TEXT_HIDDEN, max_position_embeddings=1024, pad_token_id=1, bos_token_id=0,
                eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2, tie_word_embeddings=True)
    vision = dict(depths=(1, 1, 1, 1), embed_dim=(8, 8, 8, 16), num_heads=(1, 1, 1, 2), num_groups=(1, 1, 1, 2),
                  window_size=12, projection_dim=TEXT_HIDDEN, drop_path_rate=0.0)
    return tf.Florence2Config(text_config=text, vision_config=vision, image_token_id=IMAGE_TOKEN_ID)


def processor(tok):
    import transformers as tf

    image_processor = tf.CLIPImageProcessor(
        do_resize=True, size={'height': IMAGE_SIZE, 'width': IMAGE_SIZE}, resample=3, do_center_crop=False,
        crop_size={'height': IMAGE_SIZE, 'width': IMAGE_SIZE}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=True)
    image_processor.image_seq_length = IMAGE_SEQ_LENGTH
    return tf.Florence2Processor(image_processor=image_processor, tokenizer=tok,
                                 post_processor_config=POST_PROCESSOR_CONFIG)


def build(parent: str, out_dir: str, seed: int) -> None:
    tok = tokenizer()
    save_model('Florence2ForConditionalGeneration', config(), out_dir, seed, eos_token_id=2, pad_token_id=1)
    save_processor(processor(tok), tok, out_dir, parts=('image_processor',))
