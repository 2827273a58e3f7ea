"""Helpers shared by the language workloads: reading lines, vocabularies, perplexity."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["Vocabulary", "perplexity", "read_lines"]


def perplexity(mean_token_loss: float) -> float:
    """``exp(mean_token_loss)``, ``inf`` where that overflows (a diverged model)."""
    return math.exp(mean_token_loss) if mean_token_loss < 700 else math.inf


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, without line endings."""
    with path.open(encoding="utf-8") as stream:
        return [line.rstrip("\r\n") for line in stream]


class Vocabulary:
    """A token <-> index map; unknown tokens map to ``unk_token``.

    Example:
        >>> vocab = Vocabulary(["<unk>", "a", "b"], unk_token="<unk>")
        >>> vocab.encode(["b", "z"])
        [2, 0]
    """

    def __init__(self, tokens: Sequence[str], unk_token: str) -> None:
        self.tokens = list(tokens)
        self.index = {token: position for position, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        self.unk_index = self.index[unk_token]

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        unk = self.unk_index
        return [self.index.get(token, unk) for token in tokens]

    def decode(self, indices: Iterable[int]) -> list[str]:
        return [self.tokens[index] for index in indices]

    @classmethod
    def in_order_of_appearance(
        cls, sentences: Iterable[Sequence[str]], *, specials: Sequence[str], unk_token: str
    ) -> Vocabulary:
        """``specials`` then every token in order of first appearance (deterministic)."""
        seen = dict.fromkeys(specials)
        for sentence in sentences:
            seen.update(dict.fromkeys(sentence))
        return cls(list(seen), unk_token)

    @classmethod
    def by_frequency(
        cls,
        sentences: Iterable[Sequence[str]],
        *,
        specials: Sequence[str],
        unk_token: str,
        min_freq: int = 1,
    ) -> Vocabulary:
        """``specials`` then tokens seen at least ``min_freq`` times, most frequent first."""
        counts = Counter(token for sentence in sentences for token in sentence)
        special_set = set(specials)
        frequent = sorted(
            (
                token
                for token, count in counts.items()
                if count >= min_freq and token not in special_set
            ),
            key=lambda token: (-counts[token], token),
        )
        return cls([*specials, *frequent], unk_token)
