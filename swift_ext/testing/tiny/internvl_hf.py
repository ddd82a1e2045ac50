"""Tiny InternVL3 checkpoint through transformers (``internvl_hf``).

Real InternVL3-1B-hf (GotOcr2 image processor) settings: 448-pixel tiles, at most 12, 256
tokens a tile (patch 14, downsample 0.5). Its vocabulary has 151,674 rows (Qwen2.5's tokens
plus 9 InternVL ones); one more here for the `<video>` token that transformers adds to the
tokenizer as a named special token.
"""
from __future__ import annotations

from .common import HIDDEN_SIZE, IMAGENET_MEAN, IMAGENET_STD, NUM_HEADS, build_tokenizer, save_model, save_processor
from .qwen import FIRST_SPECIAL_ID, QWEN2_5_SPECIAL_TOKENS, qwen_text_config

PARENTS = ('internvl_hf', 'interns1')  # one InternVL checkpoint; the template decides

INTERNVL_VOCAB_SIZE = 151675
INTERNVL_TILE_SIZE = 448
INTERNVL_PATCH_SIZE = 14
INTERNVL_MAX_TILES = 12
INTERNVL_IMAGE_SEQ_LENGTH = 256  # (448 / 14) ** 2 * 0.5 ** 2
INTERNVL_DOWNSAMPLE_RATIO = 0.5

INTERNVL_SPECIAL_TOKENS = QWEN2_5_SPECIAL_TOKENS + (
    ('<img>', 151665, True),
    ('</img>', 151666, True),
    ('<IMG_CONTEXT>', 151667, True),
    ('<quad>', 151668, True),
    ('</quad>', 151669, True),
    ('<ref>', 151670, True),
    ('</ref>', 151671, True),
    ('<box>', 151672, True),
    ('</box>', 151673, True),
    ('<video>', 151674, True),
)
# Named tokens transformers' InternVLProcessor reads from the tokenizer. Its processor
# expands `<video>` into per-frame `<img>...</img>` runs, so the id never reaches the model.
INTERNVL_NAMED_TOKENS = {
    'start_image_token': '<img>',
    'end_image_token': '</img>',
    'context_image_token': '<IMG_CONTEXT>',
    'video_token': '<video>',
}

INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif content['type'] == 'video' %}<video>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")



def tokenizer(parent: str = 'internvl_hf'):
    return build_tokenizer(INTERNVL_SPECIAL_TOKENS, chat_template=INTERNVL_CHAT_TEMPLATE,
                           first_special_id=FIRST_SPECIAL_ID, eos_token='<|im_end|>', pad_token='<|endoftext|>',
                           extra={'extra_special_tokens': dict(INTERNVL_NAMED_TOKENS)})


def config(parent: str = 'internvl_hf'):
    import transformers as tf

    return tf.InternVLConfig(
        text_config=qwen_text_config(INTERNVL_VOCAB_SIZE, model_type='qwen2'),
        vision_config=dict(
            hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE, num_hidden_layers=1,
            num_attention_heads=NUM_HEADS, image_size=[INTERNVL_TILE_SIZE] * 2,
            patch_size=[INTERNVL_PATCH_SIZE] * 2, use_mean_pooling=True),
        image_token_id=dict((t, i) for t, i, _ in INTERNVL_SPECIAL_TOKENS)['<IMG_CONTEXT>'],
        image_seq_length=INTERNVL_IMAGE_SEQ_LENGTH, downsample_ratio=INTERNVL_DOWNSAMPLE_RATIO,
        vision_feature_layer=-1, vision_feature_select_strategy='default', tie_word_embeddings=True)


def processor(parent: str, tok):
    import transformers as tf

    settings = dict(size={'height': INTERNVL_TILE_SIZE, 'width': INTERNVL_TILE_SIZE},
                    image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, do_rescale=True,
                    rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True)
    # crop_to_patches is off in the saved config, as in InternVL3-1B-hf: the processor (and
    # ms-swift's template) turn it on per call.
    image_processor = tf.GotOcr2ImageProcessor(crop_to_patches=False, min_patches=1,
                                               max_patches=INTERNVL_MAX_TILES, **settings)
    return tf.InternVLProcessor(image_processor=image_processor, video_processor=tf.InternVLVideoProcessor(**settings),
                                image_seq_length=INTERNVL_IMAGE_SEQ_LENGTH, tokenizer=tok,
                                chat_template=tok.chat_template)


def build(parent: str, out_dir: str, seed: int) -> None:
    tok = tokenizer(parent)
    save_model('InternVLForConditionalGeneration', config(parent), out_dir, seed, eos_token_id=[151645, 151643],
               pad_token_id=151643)
    save_processor(processor(parent, tok), tok, out_dir)
