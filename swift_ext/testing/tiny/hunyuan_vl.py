"""Tiny HunyuanOCR checkpoint (``HunYuanVLForConditionalGeneration``, transformers' ``HunYuanVLProcessor``).

Not a registered recipe (``PARENTS`` is empty): ms-swift 4.6.0's ``HunYuanVLTemplate._encode`` ends with
``processor.pad_id``, which transformers 5.19's ``HunYuanVLProcessor`` does not have (it has
``pad_token_id``), so no template encodes an image with it, and its ``_post_encode`` reads a model
layout transformers' ``HunYuanVLModel`` does not have, so nothing trains on it.
``tests/unit/test_family_hunyuan_ocr.py`` and ``tests/e2e/test_hunyuan_ocr.py`` build it with :func:`build`
to pin both; when a release fixes them, put ``'hunyuan_ocr'`` in ``PARENTS`` (and ``model_type='hunyuan_ocr'``
in the family's spec) to get the encode-level tests every other family has.

Kept real: the ids ms-swift and transformers hard-code: ``<｜hy_place▁holder▁no▁102｜>`` (the image
token, 120120, in ``HunYuanVLTemplate`` and ``HunYuanVLConfig``), the image start / end / newline
tokens 120118 / 120119 / 120121 (``HunYuanVLConfig``), and the image processor of transformers'
port: patch 16, merge 2, ``min_pixels`` 512 x 512, ``max_pixels`` 2048 x 2048, CLIP mean / std.
The prompt tokens ms-swift's template writes (``<｜hy_begin▁of▁sentence｜>``, ``<｜hy_User｜>``, ...)
sit at free ids from 120000 (their real ids are not checked here); the other ids up to 120121 are fillers.
"""
from __future__ import annotations

from .common import HIDDEN_SIZE, NUM_HEADS, build_tokenizer, save_model, save_processor

PARENTS: tuple = ()  # see the module docstring: the parent template cannot encode an image

FIRST_SPECIAL_ID = 120000
IMAGE_START_ID = 120118
IMAGE_END_ID = 120119
IMAGE_TOKEN_ID = 120120
IMAGE_NEWLINE_ID = 120121
PATCH_SIZE = 16
MERGE_SIZE = 2
MIN_PIXELS = 512 * 512
MAX_PIXELS = 2048 * 2048

IMAGE_TOKEN = '<｜hy_place▁holder▁no▁102｜>'
IMAGE_START = '<｜hy_place▁holder▁no▁100｜>'
IMAGE_END = '<｜hy_place▁holder▁no▁101｜>'
_NAMED = (
    ('<｜hy_begin▁of▁sentence｜>', 120000, True),
    ('<｜hy_end▁of▁sentence｜>', 120001, True),
    ('<｜hy_▁pad▁｜>', 120002, True),
    ('<｜hy_User｜>', 120003, True),
    ('<｜hy_Assistant｜>', 120004, True),
    ('<｜hy_place▁holder▁no▁3｜>', 120005, True),
    (IMAGE_START, IMAGE_START_ID, True),
    (IMAGE_END, IMAGE_END_ID, True),
    (IMAGE_TOKEN, IMAGE_TOKEN_ID, True),
    ('<｜hy_place▁holder▁no▁103｜>', IMAGE_NEWLINE_ID, True),
)
CHAT_TEMPLATE = (
    "<｜hy_begin▁of▁sentence｜>{% for message in messages %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}" + IMAGE_START + IMAGE_TOKEN + IMAGE_END
    + "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if message['role'] == 'user' %}<｜hy_User｜>{% else %}<｜hy_Assistant｜>{% endif %}{% endfor %}")


def _special_tokens() -> tuple:
    """The named tokens plus reserved fillers for every id between them (the ids stay contiguous)."""
    taken = {token_id for _, token_id, _ in _NAMED}
    fillers = tuple((f'<|tiny_reserved_{i}|>', i, False) for i in range(FIRST_SPECIAL_ID, IMAGE_NEWLINE_ID + 1)
                    if i not in taken)
    return tuple(sorted(_NAMED + fillers, key=lambda t: t[1]))


def tokenizer(parent: str = 'hunyuan_ocr'):
    # HunYuanVLProcessor reads the image tokens and the pad token as tokenizer attributes.
    extra = {'extra_special_tokens': {'image_token': IMAGE_TOKEN, 'image_start_token': IMAGE_START,
                                      'image_end_token': IMAGE_END}}
    return build_tokenizer(_special_tokens(), chat_template=CHAT_TEMPLATE, first_special_id=FIRST_SPECIAL_ID,
                           eos_token='<｜hy_end▁of▁sentence｜>', pad_token='<｜hy_▁pad▁｜>',
                           bos_token='<｜hy_begin▁of▁sentence｜>', extra=extra)


def config(parent: str = 'hunyuan_ocr'):
    import transformers as tf

    head_dim = HIDDEN_SIZE // NUM_HEADS
    rope = {'rope_type': 'default', 'rope_theta': 10000.0, 'mrope_section': [2, 2, 2, 2]}
    assert sum(rope['mrope_section']) == head_dim // 2
    return tf.HunYuanVLConfig(
        text_config=dict(vocab_size=IMAGE_NEWLINE_ID + 1, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE,
                         num_hidden_layers=2, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_HEADS,
                         head_dim=head_dim, rope_parameters=rope, pad_token_id=120002, bos_token_id=120000,
                         eos_token_id=120001, tie_word_embeddings=True),
        vision_config=dict(hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE, num_hidden_layers=1,
                           num_attention_heads=NUM_HEADS, patch_size=PATCH_SIZE, spatial_merge_size=MERGE_SIZE,
                           out_hidden_size=HIDDEN_SIZE),
        image_token_id=IMAGE_TOKEN_ID, im_start_id=IMAGE_START_ID, im_end_id=IMAGE_END_ID,
        im_newline_id=IMAGE_NEWLINE_ID, tie_word_embeddings=True)


def processor(parent: str, tok):
    import transformers as tf

    image_processor = tf.HunYuanVLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS,
                                                 patch_size=PATCH_SIZE, merge_size=MERGE_SIZE)
    return tf.HunYuanVLProcessor(image_processor=image_processor, tokenizer=tok, chat_template=tok.chat_template)


def build(parent: str, out_dir: str, seed: int) -> None:
    tok = tokenizer(parent)
    save_model('HunYuanVLForConditionalGeneration', config(parent), out_dir, seed, eos_token_id=120001,
               pad_token_id=120002)
    save_processor(processor(parent, tok), tok, out_dir)
