"""Tiny Gemma 3 (``Gemma3ForConditionalGeneration``) and Gemma 4 (``Gemma4ForConditionalGeneration``).

Gemma's 262k vocabulary is most of the checkpoint: the text width is 16 (not the usual 32) and the
embeddings are tied, so each table is 262,208 (Gemma 3) / 262,144 (Gemma 4) x 16 floats, ~17 MB.

Kept real, because geometry depends on it:

- Gemma 3: ``<start_of_image>`` = 255999 (ms-swift's ``Gemma3VisionTemplate.boi_token_id``),
  ``<end_of_image>`` 256000, ``<image_soft_token>`` 262144, turn tokens 105/106; the processor of
  google/gemma-3-*-it: 896 x 896 bilinear resize, 256 tokens an image (``mm_tokens_per_image``),
  SigLIP patch 14 (64 x 64 patches pooled 4 x 4), pan-and-scan off in its config.
- Gemma 4: the ids of transformers' ``Gemma4Config`` defaults (``<|image>`` 255999, ``<|image|>``
  258880, ``<image|>`` 258882, audio 256000/258881/258883, ``<|video|>`` 258884; ms-swift's
  ``Gemma4Template`` reads them from the config, it hard-codes none); the image processor of
  google/gemma-4-*: patch 16, pooling 3, ``max_soft_tokens`` 280, bicubic, no normalisation. The
  turn/channel tokens (``<|turn>``, ``<turn|>``, ...) are placed at free low ids: nothing reads them
  by id.

The tokenizer is a byte-level BPE (``Qwen2Tokenizer`` class), not Gemma's SentencePiece: only the
ids and the named tokens the processors read (``boi_token``, ``image_token``, ...) matter.
"""
from __future__ import annotations

from .common import save_model, save_processor, tokenizer_around

PARENTS = ('gemma3_vision', 'gemma4', 'gemma4_nothinking')

TEXT_HIDDEN = 16  # 262k rows: every unit of width is 1 MB of checkpoint
VISION_HIDDEN = 16
GEMMA3_VOCAB_SIZE = 262208
GEMMA4_VOCAB_SIZE = 262144
GEMMA3_IMAGE_SIZE = 896
GEMMA3_PATCH_SIZE = 14
GEMMA3_TOKENS_PER_IMAGE = 256
GEMMA4_PATCH_SIZE = 16
GEMMA4_POOLING = 3
GEMMA4_MAX_SOFT_TOKENS = 280

_COMMON = (('<pad>', 0, True), ('<eos>', 1, True), ('<bos>', 2, True), ('<unk>', 3, True), ('<mask>', 4, True))
GEMMA3_SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = _COMMON + (
    ('<start_of_turn>', 105, True),
    ('<end_of_turn>', 106, True),
    ('<start_of_image>', 255999, True),
    ('<end_of_image>', 256000, True),
    ('<image_soft_token>', 262144, True),
)
GEMMA3_NAMED_TOKENS = {'boi_token': '<start_of_image>', 'eoi_token': '<end_of_image>',
                       'image_token': '<image_soft_token>'}
GEMMA4_SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = _COMMON + (
    ('<|think|>', 98, True),
    ('<|channel>', 100, True),
    ('<channel|>', 101, True),
    ('<|tool_response>', 102, True),
    ('<|turn>', 105, True),
    ('<turn|>', 106, True),
    ('<|image>', 255999, True),
    ('<|audio>', 256000, True),
    ('<|image|>', 258880, True),
    ('<|audio|>', 258881, True),
    ('<image|>', 258882, True),
    ('<audio|>', 258883, True),
    ('<|video|>', 258884, True),
)
GEMMA4_NAMED_TOKENS = {'boi_token': '<|image>', 'eoi_token': '<image|>', 'image_token': '<|image|>',
                       'boa_token': '<|audio>', 'eoa_token': '<audio|>', 'audio_token': '<|audio|>'}

GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}<start_of_image>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
GEMMA4_CHAT_TEMPLATE = (
    GEMMA3_CHAT_TEMPLATE.replace('<start_of_turn>', '<|turn>').replace('<end_of_turn>', '<turn|>')
    .replace('<start_of_image>', '<|image|>'))


def tokenizer(parent: str):
    gemma3 = parent == 'gemma3_vision'
    return tokenizer_around(GEMMA3_SPECIAL_TOKENS if gemma3 else GEMMA4_SPECIAL_TOKENS,
                            chat_template=GEMMA3_CHAT_TEMPLATE if gemma3 else GEMMA4_CHAT_TEMPLATE,
                            unk_token='<unk>', bos_token='<bos>', eos_token='<eos>', pad_token='<pad>',
                            extra_special_tokens=dict(GEMMA3_NAMED_TOKENS if gemma3 else GEMMA4_NAMED_TOKENS))


def _text_config(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=TEXT_HIDDEN, intermediate_size=2 * TEXT_HIDDEN,
                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                max_position_embeddings=32768, sliding_window=512, tie_word_embeddings=True,
                pad_token_id=0, eos_token_id=1, bos_token_id=2)


def config(parent: str):
    import transformers as tf

    if parent == 'gemma3_vision':
        return tf.Gemma3Config(
            text_config=_text_config(GEMMA3_VOCAB_SIZE),
            vision_config=dict(hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN, num_hidden_layers=1,
                               num_attention_heads=1, image_size=GEMMA3_IMAGE_SIZE, patch_size=GEMMA3_PATCH_SIZE,
                               vision_use_head=False),
            mm_tokens_per_image=GEMMA3_TOKENS_PER_IMAGE, boi_token_index=255999, eoi_token_index=256000,
            image_token_index=262144, tie_word_embeddings=True)
    return tf.Gemma4Config(
        text_config=dict(_text_config(GEMMA4_VOCAB_SIZE), hidden_size_per_layer_input=0, vocab_size_per_layer_input=0,
                         global_head_dim=8, layer_types=['sliding_attention', 'full_attention']),
        vision_config=dict(hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN, num_hidden_layers=1,
                           num_attention_heads=1, num_key_value_heads=1, head_dim=VISION_HIDDEN,
                           patch_size=GEMMA4_PATCH_SIZE, pooling_kernel_size=GEMMA4_POOLING),
        audio_config=None, tie_word_embeddings=True)


def processor(parent: str, tok):
    import transformers as tf

    if parent == 'gemma3_vision':
        image_processor = tf.Gemma3ImageProcessor(
            size={'height': GEMMA3_IMAGE_SIZE, 'width': GEMMA3_IMAGE_SIZE}, resample=2, image_mean=[0.5] * 3,
            image_std=[0.5] * 3, do_pan_and_scan=False, pan_and_scan_min_crop_size=256,
            pan_and_scan_max_num_crops=4, pan_and_scan_min_ratio_to_activate=1.2)
        return tf.Gemma3Processor(image_processor=image_processor, tokenizer=tok,
                                  image_seq_length=GEMMA3_TOKENS_PER_IMAGE, chat_template=tok.chat_template)
    image_processor = tf.Gemma4ImageProcessor(patch_size=GEMMA4_PATCH_SIZE, pooling_kernel_size=GEMMA4_POOLING,
                                              max_soft_tokens=GEMMA4_MAX_SOFT_TOKENS)
    return tf.Gemma4Processor(feature_extractor=tf.Gemma4AudioFeatureExtractor(), image_processor=image_processor,
                              tokenizer=tok, video_processor=tf.Gemma4VideoProcessor(),
                              image_seq_length=GEMMA4_MAX_SOFT_TOKENS, chat_template=tok.chat_template)


def build(parent: str, out_dir: str, seed: int) -> None:
    tok = tokenizer(parent)
    cls = 'Gemma3ForConditionalGeneration' if parent == 'gemma3_vision' else 'Gemma4ForConditionalGeneration'
    save_model(cls, config(parent), out_dir, seed, eos_token_id=[1, 106], pad_token_id=0)
    save_processor(processor(parent, tok), tok, out_dir,
                   parts=('image_processor', 'video_processor', 'feature_extractor'))

