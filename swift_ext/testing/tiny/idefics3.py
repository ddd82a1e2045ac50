"""A tiny Idefics3 checkpoint (transformers-native ``Idefics3ForConditionalGeneration``, Llama text model).

Kept real, because geometry and ms-swift depend on it:
- the image processor of ``HuggingFaceM4/Idefics3-8B-Llama3`` as transformers 5.19 defines it
  (``Idefics3ImageProcessor`` class defaults: longest edge 4 x 364, 364-pixel tiles, splitting
  on, LANCZOS, mean/std 0.5) and ``image_seq_len`` 169 (the ``Idefics3Processor`` default:
  (364 / 14)**2 / 2**2);
- the token ids: ms-swift's ``Idefics3Template`` hard-codes ``<image>`` = 128257, so the
  tokenizer holds Llama 3's ids (``<|begin_of_text|>`` 128000, ``<|end_of_text|>`` 128001,
  pad 128002, ``<|eot_id|>`` 128009) and Idefics3's three added tokens
  (``<fake_token_around_image>`` 128256, ``<image>`` 128257, ``<end_of_utterance>`` 128258),
  filler tokens in between; vocabulary 128,259 rows (tied with the LM head).
``<global-img>`` and ``<row_R_col_C>`` are plain text there, as in the real tokenizer.
"""
from __future__ import annotations

from .common import HIDDEN_SIZE, NUM_HEADS, byte_level_vocab_and_merges, save_model, save_processor

PARENTS = ('idefics3',)

TILE_SIZE = 364
PATCH_SIZE = 14
IMAGE_SEQ_LEN = 169
SCALE_FACTOR = 2
VOCAB_SIZE = 128259
SPECIAL_TOKENS: tuple[tuple[str, int], ...] = (
    ('<|begin_of_text|>', 128000),
    ('<|end_of_text|>', 128001),
    ('<|reserved_special_token_0|>', 128002),
    ('<|start_header_id|>', 128006),
    ('<|end_header_id|>', 128007),
    ('<|eot_id|>', 128009),
    ('<fake_token_around_image>', 128256),
    ('<image>', 128257),
    ('<end_of_utterance>', 128258),
)
CHAT_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<image>{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")


def build_tokenizer():
    """A Llama 3 style byte-level BPE (``PreTrainedTokenizerFast``, as the real one) with ids as above.

    Not ``common.build_tokenizer``: that one builds a ``Qwen2Tokenizer`` and fills ids only below
    the first special token, while Llama 3's specials leave holes (128003-128005, ...) to fill.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab, merges = byte_level_vocab_and_merges()
    taken = {i for _, i in SPECIAL_TOKENS}
    for filler in range(len(vocab), VOCAB_SIZE):
        if filler not in taken:
            vocab[f'<|tiny_filler_{filler}|>'] = filler
    vocab.update(dict(SPECIAL_TOKENS))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, _ in SPECIAL_TOKENS])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token='<|begin_of_text|>',
                                        eos_token='<end_of_utterance>', pad_token='<|reserved_special_token_0|>',
                                        model_max_length=131072)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer):
    """The processor with ``HuggingFaceM4/Idefics3-8B-Llama3``'s settings (the class defaults)."""
    import transformers as tf

    return tf.Idefics3Processor(image_processor=tf.Idefics3ImageProcessor(), tokenizer=tokenizer,
                                image_seq_len=IMAGE_SEQ_LEN, chat_template=CHAT_TEMPLATE)


def build(parent: str, out_dir: str, seed: int) -> None:
    """Write a tiny Idefics3 checkpoint (config, weights, tokenizer, processor) into ``out_dir``."""
    import transformers as tf

    if parent not in PARENTS:
        raise ValueError(f'`parent` should be one of {PARENTS}, got {parent!r}.')
    tokenizer = build_tokenizer()
    text = dict(model_type='llama', vocab_size=VOCAB_SIZE, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE,
                num_hidden_layers=2, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_HEADS,
                max_position_embeddings=16384, tie_word_embeddings=True, bos_token_id=128000,
                eos_token_id=128258, pad_token_id=128002)
    vision = dict(hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE, num_hidden_layers=1,
                  num_attention_heads=NUM_HEADS, image_size=TILE_SIZE, patch_size=PATCH_SIZE)
    config = tf.Idefics3Config(text_config=text, vision_config=vision, scale_factor=SCALE_FACTOR,
                               image_token_id=128257, pad_token_id=128002, tie_word_embeddings=True)
    save_model('Idefics3ForConditionalGeneration', config, out_dir, seed, eos_token_id=[128258, 128001],
               pad_token_id=128002)
    save_processor(build_processor(tokenizer), tokenizer, out_dir)
