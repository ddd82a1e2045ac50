"""What every tiny checkpoint recipe shares: toy widths, a byte-level BPE with special tokens at
their real ids, and saving a model + processor the way ms-swift's loaders read them back."""
from __future__ import annotations

from collections.abc import Sequence

# Model dimensions: the embedding table (tied with the LM head) is most of the parameters.
HIDDEN_SIZE = 32
NUM_HEADS = 2  # head_dim 16

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# Words given whole-word BPE merges, so ordinary prompts tokenise to a handful of ids.
COMMON_WORDS = (
    'the', 'a', 'an', 'is', 'are', 'of', 'in', 'on', 'to', 'and', 'where', 'what', 'which',
    'box', 'boxes', 'image', 'picture', 'object', 'here', 'there', 'left', 'right', 'top',
    'bottom', 'point', 'click', 'find', 'answer', 'user', 'assistant', 'system', 'you',
    'helpful', 'describe', 'red', 'blue', 'green', 'cat', 'dog', 'car', 'person',
)


# ---------------------------------------------------------------------------- tokenizer
def byte_level_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary: 256 byte symbols, then whole-word merges of COMMON_WORDS."""
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())  # the 256 printable stand-ins for bytes
    vocab: dict[str, int] = {symbol: i for i, symbol in enumerate(alphabet)}
    merges: list[tuple[str, str]] = []
    for word in COMMON_WORDS:
        for spelled in (word, '\u0120' + word):  # U+0120 'Ġ' is the byte-level space
            left = spelled[0]
            for char in spelled[1:]:
                merged = left + char
                if merged not in vocab:
                    merges.append((left, char))
                    vocab[merged] = len(vocab)
                left = merged
    return vocab, merges


def build_tokenizer(special_tokens: Sequence[tuple[str, int, bool]], *, chat_template: str, first_special_id: int,
                    eos_token: str, pad_token: str, tokenizer_cls=None, extra: dict | None = None,
                    unk_token: str | None = None, bos_token: str | None = None):
    """A byte-level BPE tokenizer (``Qwen2Tokenizer`` unless told) with ``special_tokens`` at their ids.

    ``special_tokens`` are ``(token, id, special)``; special=False tokens are "added" but not
    stripped by skip_special_tokens, as in the real tokenizers. Filler tokens no merge can
    produce pad the vocabulary up to ``first_special_id``, so the ids land where ms-swift's
    templates hard-code them.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = byte_level_vocab_and_merges()
    for filler_id in range(len(vocab), first_special_id):
        vocab[f'<|tiny_filler_{filler_id}|>'] = filler_id
    for token, token_id, _ in special_tokens:
        vocab[token] = token_id
    cls = tokenizer_cls or Qwen2Tokenizer
    kwargs = dict(vocab=vocab, merges=merges, unk_token=unk_token, eos_token=eos_token, pad_token=pad_token,
                  model_max_length=32768, errors='replace', **(extra or {}))
    if bos_token is not None:
        kwargs['bos_token'] = bos_token
    tokenizer = cls(**kwargs)
    # Already in the vocabulary, so they keep their ids; this only marks them unsplittable.
    tokenizer.add_tokens([AddedToken(token, special=special, normalized=False)
                          for token, _, special in special_tokens])
    tokenizer.chat_template = chat_template
    return tokenizer


def vocab_around(special_tokens: Sequence[tuple[str, int, bool]]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary whose symbols take the ids ``special_tokens`` leave free.

    For tokenizers whose special tokens sit low or between the bytes (Mistral's 0-999, Gemma's 0-4 and 105):
    bytes and merges fill the lowest free ids; filler tokens no merge produces fill the gaps up to the
    highest special id, so every special token sits at its real id, wherever that is.
    """
    taken = {token_id: token for token, token_id, _ in special_tokens}
    base, merges = byte_level_vocab_and_merges()
    vocab: dict[str, int] = {token: token_id for token_id, token in taken.items()}
    free = (i for i in range(10 ** 7) if i not in taken)
    for symbol in sorted(base, key=base.get):  # keep the BPE's own order: a merge after its parts
        vocab[symbol] = next(free)
    used = set(vocab.values())
    for filler_id in range(max(used)):
        if filler_id not in used:
            vocab[f'<tiny_filler_{filler_id}>'] = filler_id
    return vocab, merges


def tokenizer_around(special_tokens: Sequence[tuple[str, int, bool]], *, chat_template: str, **names):
    """A byte-level BPE ``Qwen2Tokenizer`` on :func:`vocab_around`; ``names``: its ``eos_token``, ``pad_token``, ...

    Unlike :func:`build_tokenizer`, the special tokens may take any ids, below the bytes included.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = vocab_around(special_tokens)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, model_max_length=32768, errors='replace', **names)
    # Already in the vocabulary, so they keep their ids; this only marks them unsplittable.
    tokenizer.add_tokens([AddedToken(token, special=special, normalized=False)
                          for token, _, special in special_tokens])
    tokenizer.chat_template = chat_template
    return tokenizer


def save_model(model_cls_name: str, config, out_dir: str, seed: int, *, eos_token_id=None,
               pad_token_id: int | None = None, check_tied: bool = True) -> None:
    """Initialise ``transformers.<model_cls_name>(config)`` with ``seed`` and save it in float32."""
    import torch
    import transformers

    config.dtype = torch.float32  # tiny and CPU-bound: no bf16 surprises
    # fork_rng: seed the weights without changing the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(transformers, model_cls_name)(config).eval()
    if check_tied:
        embeddings = model.get_input_embeddings().weight
        if model.get_output_embeddings().weight.data_ptr() != embeddings.data_ptr():
            raise RuntimeError(f'The tiny {model_cls_name} did not tie its embeddings: '
                               'the checkpoint would hold the embedding table twice.')
    if eos_token_id is not None:
        model.generation_config.eos_token_id = eos_token_id
    if pad_token_id is not None:
        model.generation_config.pad_token_id = pad_token_id
    model.save_pretrained(out_dir)


def save_processor(processor, tokenizer, out_dir: str, *,
                   parts: Sequence[str] = ('image_processor', 'video_processor')) -> None:
    """Save a processor so every loader finds its ``parts`` (those it has).

    ``processor.save_pretrained`` writes only processor_config.json; loaders that go straight to
    AutoImageProcessor / AutoVideoProcessor (/ AutoFeatureExtractor) need their own files.
    """
    processor.save_pretrained(out_dir)
    for part in parts:
        if getattr(processor, part, None) is not None:
            getattr(processor, part).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
