"""A small word-level tokenizer for the addition task that survives verl's `AutoTokenizer` round trip.

Vocabulary (about 130 entries): 3 special tokens (<|endoftext|> = pad, <|im_start|>, <|im_end|> = eos),
the 95 printable ASCII characters and newline, and the words " write", " carry", "answer", "user",
"assistant", "system" as single tokens (built from byte-level BPE merges).

Why byte-level BPE in Qwen2's format rather than a `tokenizers` WordLevel model: in transformers 5.10,
`AutoTokenizer.from_pretrained(dir)` on a folder whose config.json says model_type=qwen2 always builds
a `Qwen2Tokenizer` (qwen2 is in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS, so `tokenizer_class` in
tokenizer_config.json is ignored). That class rebuilds the pipeline from the vocabulary and merges
with its own pre-tokenizer (Qwen's regex + ByteLevel), which turns a WordLevel vocabulary into
garbage (newline encodes to nothing). Building the tokenizer *as* a Qwen2Tokenizer makes the saved
and the reloaded tokenizer the same by construction; `save_tokenizer` also pins the class name.
"""

from __future__ import annotations

import json
import os

PAD, BOS_TURN, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS_TURN, EOS]
# Single tokens after Qwen's pre-tokenizer (which splits " write" from the following " 1").
WORDS = ["assistant", " write", " carry", "answer", "user", "system"]
CHARS = [chr(c) for c in range(32, 127)] + ["\n"]

# One turn per message; the generation prompt opens the assistant turn. EOS (<|im_end|>) ends a turn,
# so generation stops right after the answer line.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (the ByteLevel alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The byte-level vocabulary and merges (deterministic: fixed order)."""
    b2u = _bytes_to_unicode()
    enc = lambda s: "".join(b2u[b] for b in s.encode("utf-8"))  # noqa: E731
    vocab: dict[str, int] = {}
    for tok in SPECIAL_TOKENS + [enc(c) for c in CHARS]:
        vocab.setdefault(tok, len(vocab))
    merges = []
    for word in WORDS:  # left-to-right chains: ("Ġ","w") -> "Ġw", ("Ġw","r") -> "Ġwr", ...
        pieces = enc(word)
        for i in range(1, len(pieces)):
            left, right = pieces[:i], pieces[i]
            merges.append((left, right))
            vocab.setdefault(left + right, len(vocab))
    return vocab, merges


def build_tokenizer():
    """The tokenizer (a transformers `Qwen2Tokenizer` over the vocabulary above), in memory."""
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab, merges = vocab_and_merges()
    tok = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=[BOS_TURN],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def save_tokenizer(tokenizer, output_dir: str) -> None:
    """Save, pinning `tokenizer_class` (older transformers versions read it)."""
    tokenizer.save_pretrained(output_dir)
    path = os.path.join(output_dir, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)


def encode_prompt(tokenizer, user_text: str) -> list[int]:
    """Token ids of the chat prompt for one user message, ending with the open assistant turn."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_text}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer.encode(text, add_special_tokens=False)
