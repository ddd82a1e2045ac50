"""Tiny Phi-4-multimodal checkpoint for ``phi4_multimodal``, shipping swift-ext's stand-in remote code.

ms-swift 4.6 loads this model from the hub repository's remote code (``Phi4MMProcessor``,
``Phi4MMForCausalLM``, transformers < 4.49): the checkpoint carries ``phi4mm_remote``'s stand-ins in its
place (``processing_phi4mm.py``, ``modeling_phi4mm.py``, referenced by ``auto_map``), built on
transformers' port of the model. Kept real, because geometry depends on it:

- the image processor: transformers' ``Phi4MultimodalImageProcessor`` with microsoft/Phi-4-multimodal-
  instruct's ``dynamic_hd`` 36, crops of 448, patch 14, mean / std 0.5;
- the special tokens ms-swift and the processor use: ``<|endoftext|>`` 199999 (bos / pad), ``<|endoftext10|>``
  200010 (the image token), ``<|endoftext11|>`` 200011 (audio), ``<|assistant|>`` 200019, ``<|end|>`` 200020,
  ``<|user|>`` 200021, ``<|system|>`` 200022, and ``'\\n'`` as one token, 198 (``Phi4MMTemplate`` splits the
  processor's output on it); vocabulary 200064.

Everything else is toy-sized (two text layers, one vision layer, one audio block); embeddings tied
(about 26 MB). The tokenizer is a byte-level BPE (``Qwen2Tokenizer`` class). Run with
``--model_type phi4_multimodal``.
"""
from __future__ import annotations

import os
import shutil

from .common import HIDDEN_SIZE, NUM_HEADS, save_model, tokenizer_around

PARENTS = ('phi4_multimodal',)

VOCAB_SIZE = 200064
DYNAMIC_HD = 36
IMAGE_TOKEN_ID = 200010
REMOTE_FILES = ('processing_phi4mm.py', 'modeling_phi4mm.py')

SPECIAL_TOKENS: tuple[tuple[str, int, bool], ...] = (
    ('<|endoftext|>', 199999, True), ('<|endoftext10|>', IMAGE_TOKEN_ID, True), ('<|endoftext11|>', 200011, True),
    ('<|assistant|>', 200019, True), ('<|end|>', 200020, True), ('<|user|>', 200021, True),
    ('<|system|>', 200022, True))

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def tokenizer(parent: str = 'phi4_multimodal'):
    return tokenizer_around(SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE, unk_token=None, bos_token='<|endoftext|>',
                            eos_token='<|end|>', pad_token='<|endoftext|>')


def config(parent: str = 'phi4_multimodal'):
    import transformers as tf

    vision = dict(hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE, num_hidden_layers=2,
                  num_attention_heads=NUM_HEADS, image_size=448, patch_size=14, crop_size=448,
                  image_token_id=IMAGE_TOKEN_ID)
    audio = dict(hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE, num_blocks=1,
                 num_attention_heads=NUM_HEADS, ext_pw_out_channel=HIDDEN_SIZE,
                 depthwise_separable_out_channel=HIDDEN_SIZE, nemo_conv_channels=HIDDEN_SIZE)
    cfg = tf.Phi4MultimodalConfig(
        vocab_size=VOCAB_SIZE, hidden_size=HIDDEN_SIZE, intermediate_size=2 * HIDDEN_SIZE, num_hidden_layers=2,
        num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_HEADS, max_position_embeddings=32768,
        original_max_position_embeddings=32768, bos_token_id=199999, eos_token_id=[200020, 199999],
        pad_token_id=199999, tie_word_embeddings=True, vision_config=vision, audio_config=audio)
    cfg.auto_map = {'AutoModelForCausalLM': 'modeling_phi4mm.Phi4MMForCausalLM'}
    cfg.architectures = ['Phi4MMForCausalLM']
    return cfg


def processor(parent: str, tok):
    import transformers as tf

    # The processor is the stand-in; only its image processor and the tokenizer are saved (see build).
    return tf.Phi4MultimodalImageProcessor(dynamic_hd=DYNAMIC_HD, size={'height': 448, 'width': 448}, patch_size=14)


def build(parent: str, out_dir: str, seed: int) -> None:
    import json

    if parent not in PARENTS:
        raise ValueError(f'`parent` should be one of {PARENTS}, got {parent!r}.')
    tok = tokenizer(parent)
    cfg = config(parent)
    save_model('Phi4MultimodalForCausalLM', cfg, out_dir, seed, eos_token_id=[200020, 199999], pad_token_id=199999)
    with open(os.path.join(out_dir, 'config.json'), encoding='utf-8') as f:  # save_model writes the class it built
        saved = json.load(f)
    saved.update(architectures=cfg.architectures, auto_map=cfg.auto_map)
    with open(os.path.join(out_dir, 'config.json'), 'w', encoding='utf-8') as f:
        json.dump(saved, f, indent=2)
    image_processor = processor(parent, tok)
    image_processor.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    # AutoProcessor finds the stand-in through processor_config.json's auto_map.
    with open(os.path.join(out_dir, 'processor_config.json'), 'w', encoding='utf-8') as f:
        json.dump({'processor_class': 'Phi4MMProcessor',
                   'auto_map': {'AutoProcessor': 'processing_phi4mm.Phi4MMProcessor'}}, f, indent=2)
    remote = os.path.join(os.path.dirname(__file__), 'phi4mm_remote')
    for name in REMOTE_FILES:
        shutil.copyfile(os.path.join(remote, name), os.path.join(out_dir, name))
