"""Deterministic byte-level BPE tokenizers for the tiny models.

A BPE is trained with `tokenizers` on a fixed, generated English corpus (no time, no randomness).
Imports of `tokenizers` stay inside functions.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

# Qwen2 / GPT-4-style and GPT-4o-style pre-tokenisation regexes (as the real tokenizers use).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
O200K_PRETOKENIZE_REGEX = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

_BASE_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A picture shows a red square next to a blue circle on a white background.",
    "Describe the image in one short sentence.",
    "What color is the large shape in the middle of the picture?",
    "There are two cats sitting on a wooden table near the window.",
    "The sky is clear and the sun is shining over the green hills.",
    "Count the number of objects in this photo and list them.",
    "The chart has three bars: the first is tall, the second is short, the third is medium.",
    "Please answer with a single word.",
    "In the top left corner there is a small yellow triangle.",
    "The document contains a table with names, dates and numbers.",
    "A person is riding a bicycle along the river at sunset.",
    "This is a photograph of a city street with cars, buses and people.",
    "The text in the image says: hello world, 2024, version 1.0!",
    "Is there a dog in the image? Yes, there is a brown dog.",
    "Compare the two images and explain the difference.",
    "The assistant looks at the image carefully before it answers.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024.",
    "Symbols: ( ) [ ] { } < > + - * / = % # @ & ! ? , . ; : ' \" _ | ~ ^ $",
    "def main():\n    print(\"hello\")\n    return 0\n",
    "User: what is in this picture?\nAssistant: a tree, a house and a car.\n",
    "The mountains are covered with snow, and the lake below reflects them.",
    "An old map shows roads, rivers, forests and small villages.",
    "She wrote a long letter and put it into a brown envelope.",
    "The model should produce a short caption for every image it sees.",
    "Photographs of animals: elephants, giraffes, zebras, monkeys, penguins and dolphins.",
    "The kitchen has a refrigerator, an oven, a sink, cupboards and a microwave.",
    "Weather report: cloudy in the morning, light rain in the afternoon, windy at night.",
    "Furniture includes chairs, sofas, shelves, lamps, carpets and mirrors.",
    "Vegetables and fruit: carrots, potatoes, tomatoes, apples, bananas, oranges, grapes.",
    "The scientist measured temperature, pressure, humidity and brightness every hour.",
    "Musicians played guitars, violins, drums and pianos during the evening concert.",
    "Traffic signs warn drivers about crossings, bridges, tunnels and sharp curves.",
    "Children were playing football, basketball and volleyball in the playground.",
    "Write a detailed description of everything visible, including background objects.",
    "The painting uses orange, purple, pink, gray, silver and golden colours.",
    "Questions about geometry: rectangles, hexagons, pentagons, ellipses and spirals.",
    "Clothing: jackets, trousers, shirts, dresses, shoes, gloves, scarves and hats.",
    "Professional kitchens require organization, cleanliness, speed and creativity.",
    "Transportation: airplanes, helicopters, trains, ships, motorcycles and trucks.",
    "Identify whether the statement about the image is true or false, then justify it.",
]
_SUBJECTS = ["the cat", "a dog", "the red car", "an old man", "the small bird", "a green tree",
             "the tall building", "a young woman", "the white boat", "a black horse"]
_VERBS = ["is near", "looks at", "stands beside", "moves toward", "sits under", "is behind"]
_OBJECTS = ["the house", "a blue river", "the bright window", "a wooden bench", "the empty road",
            "a large stone", "the dark forest"]


def corpus() -> list[str]:
    """The fixed training corpus (a deterministic list of strings)."""
    lines = list(_BASE_SENTENCES)
    for s, v, o in itertools.product(_SUBJECTS, _VERBS, _OBJECTS):
        lines.append(f"{s[0].upper()}{s[1:]} {v} {o}.")
    return lines


def train_bpe(vocab_size: int, regex: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE; returns (vocab, merges) in byte-level string form."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return vocab, merges


def build_tokenizer_json(
    vocab: dict[str, int],
    merges: list[tuple[str, str]],
    regex: str,
    special_tokens: list[str],
    extra_tokens: list[str] = (),
) -> str:
    """Assemble a tokenizer.json string: BPE(vocab, merges) + added tokens.

    `extra_tokens` must already be in `vocab`; they are registered as non-special added tokens
    (so they always come out as one token). `special_tokens` are appended after the vocab in order.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=list(merges),
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    if extra_tokens:
        for t in extra_tokens:
            assert t in vocab, t
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in extra_tokens])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    base = len(vocab)
    for i, t in enumerate(special_tokens):
        got = tok.token_to_id(t)
        assert got == base + i, (t, got, base + i)
    # Canonical, deterministic serialisation.
    return json.dumps(json.loads(tok.to_str()), ensure_ascii=False, indent=2, sort_keys=False) + "\n"


def added_tokens_decoder(tokenizer_json: str) -> dict[str, Any]:
    """The `added_tokens_decoder` block of a tokenizer_config.json, from a tokenizer.json string."""
    out: dict[str, Any] = {}
    for t in json.loads(tokenizer_json)["added_tokens"]:
        out[str(t["id"])] = {
            "content": t["content"],
            "lstrip": t["lstrip"],
            "normalized": t["normalized"],
            "rstrip": t["rstrip"],
            "single_word": t["single_word"],
            "special": t["special"],
        }
    return out
