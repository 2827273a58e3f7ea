"""Writers of tiny data sets in the exact on-disk formats the workloads read."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MULTI30K_PAIRS",
    "PTB_TEST",
    "PTB_TRAIN",
    "PTB_VALID",
    "WIKITEXT2_TEST",
    "WIKITEXT2_TRAIN",
    "WIKITEXT2_VALID",
    "write_cifar10",
    "write_cifar100",
    "write_multi30k",
    "write_ptb",
    "write_wikitext2",
]


def _write_cifar_pickle(path: Path, batch: dict[bytes, Any]) -> None:
    """A protocol-2 pickle with bytes keys, like the 'python version' files (Python 2 cPickle).

    Those files name ``numpy.core.multiarray._reconstruct``; numpy 2 writes ``numpy._core``,
    so the module name is rewritten to match the real files.
    """
    payload = pickle.dumps(batch, protocol=2)
    path.write_bytes(payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


def _images(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)


def write_cifar10(data_dir: Path, images_per_batch: int = 8, seed: int = 0) -> None:
    """``cifar-10-batches-py/{data_batch_1..5,test_batch}`` with random pixels and labels."""
    rng = np.random.default_rng(seed)
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        _write_cifar_pickle(
            folder / name,
            {
                b"batch_label": f"{name} of 5".encode(),
                b"labels": [int(label) for label in rng.integers(0, 10, images_per_batch)],
                b"data": _images(rng, images_per_batch),
                b"filenames": [f"image_{i}.png".encode() for i in range(images_per_batch)],
            },
        )


def write_cifar100(data_dir: Path, images_per_split: int = 12, seed: int = 0) -> None:
    """``cifar-100-python/{train,test}`` with fine labels up to 99 and coarse labels."""
    rng = np.random.default_rng(seed)
    folder = data_dir / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "test"):
        fine = [int(label) for label in rng.integers(0, 100, images_per_split)]
        fine[0] = 99
        _write_cifar_pickle(
            folder / name,
            {
                b"filenames": [f"image_{i}.png".encode() for i in range(images_per_split)],
                b"batch_label": f"{name} batch 1 of 1".encode(),
                b"fine_labels": fine,
                b"coarse_labels": [label // 5 for label in fine],
                b"data": _images(rng, images_per_split),
            },
        )


# Mikolov's PTB files: lower case, a leading space, numbers as N, rare words as <unk>.
PTB_TRAIN = [
    " pierre <unk> N years old will join the board as a nonexecutive director nov. N ",
    " mr. <unk> is chairman of <unk> n.v. the dutch publishing group ",
    " rudolph <unk> N years old and former chairman of consolidated gold fields plc was named "
    "a nonexecutive director of this british industrial conglomerate ",
    " a form of asbestos once used to make kent cigarette filters has caused a high percentage "
    "of cancer deaths among a group of workers exposed to it more than N years ago researchers "
    "reported ",
]
# "on" and "sunday" are not in the training file: <unk> in the validation split.
PTB_VALID = [" the board will join the group on sunday ", " mr. <unk> is N years old "]
PTB_TEST = [
    " the dutch group was named a director ",
    " researchers reported a high percentage of cancer deaths ",
    " the chairman of the board is N years old ",
]


def write_ptb(data_dir: Path) -> None:
    """``ptb/ptb.{train,valid,test}.txt``, one sentence per line."""
    folder = data_dir / "ptb"
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in (("train", PTB_TRAIN), ("valid", PTB_VALID), ("test", PTB_TEST)):
        (folder / f"ptb.{split}.txt").write_text("".join(f"{line}\n" for line in lines))


# Multi30k task-1 raw text: true case, punctuation attached to words.
MULTI30K_PAIRS = [
    ("Zwei junge Männer sind im Freien.", "Two young men are outside."),
    ("Ein Mann schläft.", "A man is sleeping."),
    ("Ein Hund rennt im Park.", "A dog runs in the park."),
    ("Zwei Hunde spielen im Schnee.", "Two dogs play in the snow."),
    ("Eine Frau liest ein Buch.", "A woman reads a book."),
    ("Ein Kind spielt im Park.", "A child plays in the park."),
    ("Ein Mann liest im Freien.", "A man reads outside."),
    ("Eine Frau schläft im Park.", "A woman is sleeping in the park."),
]


def write_multi30k(
    data_dir: Path,
    splits: dict[str, list[tuple[str, str]]] | None = None,
    langs: tuple[str, str] = ("de", "en"),
) -> None:
    """``multi30k/{train,val,test}.{de,en}``, aligned line by line."""
    if splits is None:
        splits = {"train": MULTI30K_PAIRS, "val": MULTI30K_PAIRS[:2], "test": MULTI30K_PAIRS[2:6]}
    folder = data_dir / "multi30k"
    folder.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        for position, lang in enumerate(langs):
            text = "".join(f"{pair[position]}\n" for pair in pairs)
            (folder / f"{split}.{lang}").write_text(text, encoding="utf-8")


# WikiText-2's tokenized files: every line starts and ends with a space, tokens are separated by
# single spaces, blank lines are " ", headings are " = Title = " / " = = Section = = ", numbers
# are split as 1 @,@ 200 and 0 @.@ 5, hyphens as @-@, and rare words are already <unk>.
WIKITEXT2_TRAIN = [
    " ",
    " = Harbour Light = ",
    " ",
    " Harbour Light is a <unk> lighthouse on the northern coast of the island . It was built in "
    "1871 and stands 24 @.@ 5 metres ( 80 ft ) tall . The light was first lit on 1 May 1872 , "
    "and it has guided ships into the harbour ever since . ",
    " The tower is made of local stone and was painted white with a red @-@ striped lantern . ",
    " ",
    " = = History = = ",
    " ",
    " Plans for a light on the headland were drawn up in 1865 after a storm wrecked three "
    "ships on the rocks . The harbour board raised 1 @,@ 200 pounds , and the <unk> engineer "
    "James <unk> designed the tower . Work began in the spring of 1869 and ended two years "
    "later . ",
    " In 1923 the oil lamp was replaced by an electric light , and the keepers left the island "
    "in 1961 when the light became automatic . ",
    " ",
    " = = = Keepers = = = ",
    " ",
    " The first keeper was Thomas <unk> , who lived in the cottage beside the tower with his "
    "wife and four children . His diary records the storms , the ships and the birds that "
    "struck the lantern at night . ",
    " ",
    " = = Description = = ",
    " ",
    " The tower has a round plan and tapers from 6 metres at the base to 4 metres below the "
    "gallery . A stair of 98 steps leads to the lantern , which holds a lens of the second "
    "order . The light can be seen from 18 nautical miles ( 33 km ) in clear weather . ",
    " ",
    " ",
    " = Grey Heron = ",
    " ",
    " The grey heron is a long @-@ legged wading bird of the heron family . It is common on "
    "the coast and on rivers , where it hunts fish , frogs and small <unk> in shallow water . ",
    " ",
]
WIKITEXT2_VALID = [
    " ",
    " = = Lighthouse keepers = = ",
    " ",
    " The keepers kept the lantern clean and wound the clock every four hours . A <unk> "
    "lobster boat brought food to the island each week . ",
    " ",
]
WIKITEXT2_TEST = [
    " ",
    " = Grey Heron = ",
    " ",
    " The heron stands still in the water and waits for fish . It builds a nest of sticks in "
    "tall trees near the coast . ",
    " ",
]


def write_wikitext2(data_dir: Path) -> None:
    """``wikitext-2/wiki.{train,valid,test}.tokens``, one paragraph or heading per line."""
    folder = data_dir / "wikitext-2"
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in (
        ("train", WIKITEXT2_TRAIN),
        ("valid", WIKITEXT2_VALID),
        ("test", WIKITEXT2_TEST),
    ):
        (folder / f"wiki.{split}.tokens").write_text(
            "".join(f"{line}\n" for line in lines), encoding="utf-8"
        )
