"""A tiny random-weight masked LM for tests and offline runs, saved in the transformers folder layout.

`make_tiny_mlm(folder)` writes a `BertForMaskedLM` (2 layers, hidden 32) and a WordPiece
`BertTokenizer` built from an in-memory vocab (transformers 5 ignores `vocab_file=`). The vocab
holds the special tokens, the four view words, the probe template's words, a few hundred common
English words, and word pieces (every letter and digit as "##x", common suffixes) so any ASCII
word can be spelled and many split into several pieces ("smiling" -> s ##mi ##ling style).
Loading goes through `AutoTokenizer` / `AutoModelForMaskedLM.from_pretrained(folder)`, exactly
the path a hub id like `bert-base-uncased` takes. `scripts/make_tiny_models.py DIR` writes `DIR/mlm`.

The weights are random (initialised with a wide std so the view distribution is far from
uniform and the debiasing code paths have something to do); its judgements mean nothing.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
VIEW_WORDS = ("front", "side", "back", "overhead")
PROBE_WORDS = ("this", "image", "is", "depicting", "a", "view", "of")
PUNCTUATION = tuple(".,!?;:'\"-()/&")
WORD_PIECE_SUFFIXES = (
    "##s",
    "##es",
    "##ed",
    "##er",
    "##ers",
    "##est",
    "##ing",
    "##ly",
    "##y",
    "##ful",
    "##ness",
    "##less",
    "##able",
    "##ion",
    "##ist",
    "##ish",
    "##ment",
    "##head",
    "##ling",
    "##mi",
    "##ie",
)
COMMON_WORDS = """
an the and or with without in on at to for from by as its his her their my our your
object thing dog cat bird horse cow pig sheep rabbit fox wolf bear lion tiger elephant monkey
frog fish shark whale owl eagle duck chicken toucan kangaroo penguin dragon unicorn robot
man woman boy girl child baby person people king queen knight wizard astronaut soldier chef
face head eye eyes nose mouth ear ears hair hand hands arm arms leg legs foot feet tail wing wings
smile happy sad angry cute small big large tiny huge tall short long round flat old new young
red blue green yellow orange purple pink black white brown gray grey gold silver golden wooden
car truck bus train plane boat ship bike bicycle motorcycle rocket tank tractor
house castle tower bridge church temple building room door window wall roof floor garden
chair table bed sofa lamp clock vase cup mug bowl plate bottle glass box bag backpack hat
shoe shoes shirt dress jacket coat gloves boots helmet mask crown ring necklace sword shield
tree flower plant leaf rose grass rock stone mountain river lake sea beach island cloud sky
apple banana orange cake pizza burger bread cheese egg ice cream cookie donut sushi
book pen pencil paper phone computer camera guitar piano drum violin ball toy doll teddy
wearing holding riding sitting standing running walking flying jumping sleeping eating playing
made colorful beautiful detailed realistic cartoon photo painting sculpture statue model
high quality very highly render rendering style art digital 3d dslr closeup portrait full body
top bottom left right up down inside outside above below behind near under over two three
one some many all each every other same different good bad best first last little
""".split()


def tiny_vocabulary(extra_words: Iterable[str] = ()) -> list[str]:
    """The tiny LM's vocabulary: special tokens first (ids 0-4), then words, letters, digits, pieces."""
    ordered = [
        *SPECIAL_TOKENS,
        *VIEW_WORDS,
        *PROBE_WORDS,
        *PUNCTUATION,
        *COMMON_WORDS,
        *extra_words,
        *string.ascii_lowercase,
        *string.digits,
        *(f"##{character}" for character in string.ascii_lowercase + string.digits),
        *WORD_PIECE_SUFFIXES,
    ]
    return list(dict.fromkeys(ordered))


def build_tiny_mlm(folder: str | Path, vocabulary: list[str], seed: int = 0, max_length: int = 128) -> Path:
    """Save a random `BertForMaskedLM` and a `BertTokenizer` over `vocabulary` to `folder`."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(
        vocab={token: index for index, token in enumerate(vocabulary)}, model_max_length=max_length
    )
    config = BertConfig(
        vocab_size=len(vocabulary),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_length,
        initializer_range=0.5,
        pad_token_id=vocabulary.index("[PAD]"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_mlm(folder: str | Path, seed: int = 0) -> Path:
    """Write the tiny random masked LM (model.safetensors, config.json, tokenizer files) to `folder`."""
    return build_tiny_mlm(folder, tiny_vocabulary(), seed=seed)
