"""Tiny PaddleOCR-VL 1.5 checkpoint (``PaddleOCRVLForConditionalGeneration``) for ``paddle_ocr_1_5``.

ms-swift serves it as model type ``paddleocr_vl`` (the architecture is shared with the
remote-code ``paddle_ocr``, so the model type must be named).

Kept real: ``<|IMAGE_PLACEHOLDER|>`` at 100295 (hard-coded in ms-swift's
``PaddleOCRTemplate``), the video placeholder at 100296 and ``<|IMAGE_START|>`` /
``<|IMAGE_END|>`` at 101305 / 101306 (``PaddleOCRVLConfig``'s ids), the 103424-row vocabulary,
and PaddleOCR-VL-1.5's ``preprocessor_config.json``: patch 14, merge 2, temporal patch 1,
``min_pixels`` 112896, ``max_pixels`` 1003520, mean/std 0.5, bicubic. ERNIE's sentencepiece
tokenizer is replaced by the shared byte-level BPE, so the prompt tokens ms-swift does not
hard-code (``<|begin_of_sentence|>``, ``</s>``) sit at free ids from 100272; the ids between
the real ones are reserved fillers.
"""
from __future__ import annotations

from .common import HIDDEN_SIZE, NUM_HEADS, build_tokenizer, save_model, save_processor

PARENTS = ('paddle_ocr_1_5',)

PADDLE_VOCAB_SIZE = 103424
FIRST_SPECIAL_ID = 100272
IMAGE_PLACEHOLDER_ID = 100295
VIDEO_PLACEHOLDER_ID = 100296
IMAGE_START_ID = 101305
IMAGE_END_ID = 101306
PATCH_SIZE = 14
MERGE_SIZE = 2
MIN_PIXELS = 112896  # 144 * 28 * 28
MAX_PIXELS = 1003520  # 1280 * 28 * 28

_NAMED = (
    ('<|end_of_sentence|>', 100272, True),
    ('<|begin_of_sentence|>', 100273, True),
    ('</s>', 100274, True),
    ('<s>', 100275, True),
    ('<unk>', 100276, True),
    ('<|IMAGE_PLACEHOLDER|>', IMAGE_PLACEHOLDER_ID, True),
    ('<|VIDEO_PLACEHOLDER|>', VIDEO_PLACEHOLDER_ID, True),
    ('<|IMAGE_START|>', IMAGE_START_ID, True),
    ('<|IMAGE_END|>', IMAGE_END_ID, True),
)


def _special_tokens() -> tuple:
    """The named tokens plus reserved fillers for every id between them (the ids stay contiguous)."""
    taken = {token_id for _, token_id, _ in _NAMED}
    fillers = tuple((f'<|tiny_reserved_{i}|>', i, False) for i in range(FIRST_SPECIAL_ID, IMAGE_END_ID + 1)
                    if i not in taken)
    return tuple(sorted(_NAMED + fillers, key=lambda t: t[1]))


PADDLE_CHAT_TEMPLATE = (
    "<|begin_of_sentence|>{% for message in messages %}"
    "{% if message['role'] == 'user' %}User: {% else %}Assistant:\n{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}\n{% endfor %}{% if add_generation_prompt %}Assistant:\n{% endif %}")


def tokenizer(parent: str = 'paddle_ocr_1_5'):
    return build_tokenizer(_special_tokens(), chat_template=PADDLE_CHAT_TEMPLATE, first_special_id=FIRST_SPECIAL_ID,
                           eos_token='</s>', pad_token='<unk>', unk_token='<unk>', bos_token='<s>',
                           extra={'extra_special_tokens': {'image_token': '<|IMAGE_PLACEHOLDER|>'}})


def config(parent: str = 'paddle_ocr_1_5'):
    import transformers as tf

    head_dim = HIDDEN_SIZE // NUM_HEADS
    rope = {'rope_type': 'default', 'rope_theta': 500000.0, 'mrope_section': [2, 3, 3]}
    assert sum(rope['mrope_section']) == head_dim // 2
    return tf.PaddleOCRVLConfig(
        text_config=dict(vocab_size=PADDLE_VOCAB_SIZE, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE,
                         num_hidden_layers=2, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_HEADS,
                         head_dim=head_dim, rope_parameters=rope, pad_token_id=100276, bos_token_id=100275,
                         eos_token_id=100274, tie_word_embeddings=True),
        vision_config=dict(hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE, num_hidden_layers=1,
                           num_attention_heads=NUM_HEADS, image_size=384, patch_size=PATCH_SIZE,
                           spatial_merge_size=MERGE_SIZE),
        image_token_id=IMAGE_PLACEHOLDER_ID, video_token_id=VIDEO_PLACEHOLDER_ID,
        vision_start_token_id=IMAGE_START_ID, vision_end_token_id=IMAGE_END_ID, tie_word_embeddings=True)


def processor(parent: str, tok):
    import transformers as tf

    image_processor = tf.PaddleOCRVLImageProcessor(
        min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=PATCH_SIZE, merge_size=MERGE_SIZE,
        temporal_patch_size=1, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], resample=3)
    return tf.PaddleOCRVLProcessor(image_processor=image_processor, tokenizer=tok, chat_template=tok.chat_template)


def build(parent: str, out_dir: str, seed: int) -> None:
    tok = tokenizer(parent)
    save_model('PaddleOCRVLForConditionalGeneration', config(parent), out_dir, seed, eos_token_id=100274,
               pad_token_id=100276)
    save_processor(processor(parent, tok), tok, out_dir)
