"""Transformer translation on Multi30k (German -> English by default), scored by greedy BLEU.

Model: Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (arXiv:1706.03762), built on
``torch.nn.Transformer``: sinusoidal positions, embeddings scaled by sqrt(d_model), target
embedding tied to the output projection (Press & Wolf, 2017) unless disabled. Data: Elliott et
al., "Multi30K: Multilingual English-German Image Descriptions", 2016 — aligned files
``multi30k/{train,val,test}.{src,tgt}``, one sentence per line.

Tokenisation is whitespace splitting of lower-cased text (punctuation stays attached, as in the
raw files); vocabularies come from the training split (tokens seen ``min_freq`` times) with
``<pad>=0, <bos>=1, <eos>=2, <unk>=3``. Sentences are cut to ``max_len`` tokens. BLEU is
sacrebleu's corpus BLEU (0-100, 13a tokenisation, case-insensitive since the model's output is
lower case) of greedy decodes against the raw references (Post, 2018, arXiv:1804.08771).

Splits: the ``train``, ``val`` and ``test`` files. Each is three tensors: sources [N, S] and
targets [N, T], padded with ``<pad>`` to the split's longest sentence, and each row's index
into :attr:`TransformerMTWorkload.references` (its raw target sentence, for BLEU). ``loss``
and ``evaluate`` cut every batch to its own longest sentence (:func:`trim_padding`), so a
batch costs what it would with per-batch padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sacrebleu
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from trainers.workloads._base import (
    Batch,
    Splits,
    TensorSplit,
    Workload,
    evaluation_mode,
    to_device,
)
from trainers.workloads._options import TransformerMTOptions
from trainers.workloads._registry import BUILTIN_WORKLOADS
from trainers.workloads._text import Vocabulary, read_lines

__all__ = [
    "TransformerMTWorkload",
    "TranslationTransformer",
    "pad_sentences",
    "tokenize",
    "trim_padding",
]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_INDEX, BOS_INDEX, EOS_INDEX = 0, 1, 2


def tokenize(line: str) -> list[str]:
    """Lower-cased whitespace tokens."""
    return line.lower().split()


def pad_sentences(sentences: Sequence[Sequence[int]]) -> Tensor:
    """int64 [N, longest] of the token ids, padded at the end with <pad>."""
    if not sentences:
        return torch.zeros((0, 1), dtype=torch.int64)
    return pad_sequence(
        [torch.tensor(ids, dtype=torch.int64) for ids in sentences],
        batch_first=True,
        padding_value=PAD_INDEX,
    )


def trim_padding(batch: Batch) -> Batch:
    """``(src, tgt, *rest)`` with the columns after each one's last non-pad token dropped."""
    src, tgt = batch[0], batch[1]
    if src.shape[0] == 0:
        return batch
    # One host sync for both lengths: the position after the last non-pad token of any row.
    lengths = torch.stack(
        [
            ((tokens != PAD_INDEX) * torch.arange(1, tokens.shape[1] + 1, device=tokens.device))
            .amax()
            .to(src.device)
            for tokens in (src, tgt)
        ]
    ).tolist()
    return (src[:, : lengths[0]], tgt[:, : lengths[1]], *batch[2:])


def _sinusoidal_positions(num_positions: int, d_model: int) -> Tensor:
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(1e4) / d_model)
    )
    table = torch.zeros(num_positions, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
    return table


def _causal_mask(length: int, device: torch.device) -> Tensor:
    """True above the diagonal: position i may not attend to j > i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(diagonal=1)


class TranslationTransformer(nn.Module):
    """``nn.Transformer`` with token embeddings, sinusoidal positions and an output projection.

    ``forward(src [B, S], tgt_in [B, T]) -> logits [B, T, tgt_vocab]`` (teacher forcing).
    """

    positions: Tensor

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        d_model: int,
        num_heads: int,
        num_layers: int,
        ffn_size: int,
        dropout: float,
        max_positions: int,
        norm_first: bool = False,
        tie_embeddings: bool = True,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.src_embedding = nn.Embedding(src_vocab_size, d_model, padding_idx=PAD_INDEX)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, d_model, padding_idx=PAD_INDEX)
        self.register_buffer(
            "positions", _sinusoidal_positions(max_positions, d_model), persistent=False
        )
        self.dropout = nn.Dropout(dropout)
        layer_args: dict[str, Any] = {
            "d_model": d_model,
            "nhead": num_heads,
            "dim_feedforward": ffn_size,
            "dropout": dropout,
            "batch_first": True,
            "norm_first": norm_first,
        }
        # Pre-LN stacks need a final LayerNorm; the paper's post-LN stack has none.
        encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(**layer_args),
            num_layers,
            norm=nn.LayerNorm(d_model) if norm_first else None,
            enable_nested_tensor=False,
        )
        decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(**layer_args),
            num_layers,
            norm=nn.LayerNorm(d_model) if norm_first else None,
        )
        self.transformer = nn.Transformer(
            d_model, num_heads, custom_encoder=encoder, custom_decoder=decoder, batch_first=True
        )
        self.generator = nn.Linear(d_model, tgt_vocab_size)
        for embedding in (self.src_embedding, self.tgt_embedding):
            nn.init.normal_(embedding.weight, std=d_model**-0.5)
            with torch.no_grad():
                embedding.weight[PAD_INDEX].zero_()
        if tie_embeddings:
            self.generator.weight = self.tgt_embedding.weight

    def _embed(self, embedding: nn.Embedding, tokens: Tensor) -> Tensor:
        positions = self.positions[: tokens.shape[1]]
        embedded: Tensor = self.dropout(embedding(tokens) * math.sqrt(self.d_model) + positions)
        return embedded

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        src_padding = src == PAD_INDEX
        hidden = self.transformer(
            self._embed(self.src_embedding, src),
            self._embed(self.tgt_embedding, tgt_in),
            tgt_mask=_causal_mask(tgt_in.shape[1], tgt_in.device),
            src_key_padding_mask=src_padding,
            tgt_key_padding_mask=tgt_in == PAD_INDEX,
            memory_key_padding_mask=src_padding,
            tgt_is_causal=True,
        )
        logits: Tensor = self.generator(hidden)
        return logits

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, max_tokens: int) -> list[list[int]]:
        """Greedy target ids per source sentence, without <bos> and <eos> (at most max_tokens)."""
        src_padding = src == PAD_INDEX
        memory = self.transformer.encoder(
            self._embed(self.src_embedding, src), src_key_padding_mask=src_padding
        )
        generated = torch.full((src.shape[0], 1), BOS_INDEX, dtype=torch.long, device=src.device)
        finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_tokens + 1):  # max_tokens words, then <eos>
            hidden = self.transformer.decoder(
                self._embed(self.tgt_embedding, generated),
                memory,
                tgt_mask=_causal_mask(generated.shape[1], src.device),
                memory_key_padding_mask=src_padding,
                tgt_is_causal=True,
            )
            next_tokens = self.generator(hidden[:, -1]).argmax(dim=-1)
            next_tokens = next_tokens.masked_fill(finished, PAD_INDEX)
            generated = torch.cat([generated, next_tokens[:, None]], dim=1)
            finished |= next_tokens == EOS_INDEX
            if bool(finished.all()):
                break
        decoded = []
        for row in generated[:, 1:].tolist():
            words = row[: row.index(EOS_INDEX)] if EOS_INDEX in row else row
            decoded.append([token for token in words if token != PAD_INDEX][:max_tokens])
        return decoded


def _token_loss(model: nn.Module, batch: Batch, reduction: str) -> tuple[Tensor, Tensor]:
    src, tgt = batch[0], batch[1]
    logits = model(src, tgt[:, :-1])
    target = tgt[:, 1:]
    loss = F.cross_entropy(
        logits.flatten(0, 1).float(), target.flatten(), ignore_index=PAD_INDEX, reduction=reduction
    )
    return loss, (target != PAD_INDEX).sum()


class TransformerMTWorkload(Workload[TransformerMTOptions]):
    """Multi30k translation; batches are ``(int64 src [B, S], int64 tgt [B, T], int64 [B])``.

    The third tensor indexes :attr:`references`. Call :meth:`load_splits` before
    :meth:`build_model`: the vocabularies come from the data.

    Attributes:
        references: the raw target sentences of all splits (train, then val, then test).
    """

    info = BUILTIN_WORKLOADS["transformer-mt"]

    def __init__(self, options: TransformerMTOptions) -> None:
        super().__init__(options)
        self.src_vocabulary: Vocabulary | None = None
        self.tgt_vocabulary: Vocabulary | None = None
        self.references: list[str] = []

    def _files(self, split: str) -> tuple[str, str]:
        return (
            f"multi30k/{split}.{self.options.src_lang}",
            f"multi30k/{split}.{self.options.tgt_lang}",
        )

    def load_splits(self, data_dir: Path) -> Splits:
        names = ("train", "val", "test")
        self.require_files(data_dir, [path for split in names for path in self._files(split)])
        lines = {
            split: tuple(read_lines(data_dir / path) for path in self._files(split))
            for split in names
        }
        min_freq = self.options.min_freq
        src_vocabulary, tgt_vocabulary = (
            Vocabulary.by_frequency(
                (tokenize(line) for line in side),
                specials=SPECIALS,
                unk_token=UNK,
                min_freq=min_freq,
            )
            for side in lines["train"]
        )
        self.src_vocabulary, self.tgt_vocabulary = src_vocabulary, tgt_vocabulary
        self.references = []
        return Splits(*(self._split(split, *lines[split]) for split in names))

    def _split(self, name: str, src_lines: list[str], tgt_lines: list[str]) -> TensorSplit:
        if len(src_lines) != len(tgt_lines):
            raise ValueError(
                f"{self.info.name}: {name} has {len(src_lines)} source but {len(tgt_lines)} "
                "target lines; the parallel files must be aligned line by line"
            )
        assert self.src_vocabulary is not None and self.tgt_vocabulary is not None
        max_len = self.options.max_len
        sources = [
            [*self.src_vocabulary.encode(tokenize(line)[:max_len]), EOS_INDEX] for line in src_lines
        ]
        targets = [
            [BOS_INDEX, *self.tgt_vocabulary.encode(tokenize(line)[:max_len]), EOS_INDEX]
            for line in tgt_lines
        ]
        first = len(self.references)
        self.references.extend(line.strip() for line in tgt_lines)
        return TensorSplit(
            pad_sentences(sources),
            pad_sentences(targets),
            torch.arange(first, len(self.references), dtype=torch.int64),
        )

    def build_model(self) -> nn.Module:
        if self.src_vocabulary is None or self.tgt_vocabulary is None:
            raise RuntimeError(
                f"{self.info.name}: call load_splits(data_dir) before build_model(); the "
                "vocabulary sizes come from the training data"
            )
        options = self.options
        return TranslationTransformer(
            len(self.src_vocabulary),
            len(self.tgt_vocabulary),
            d_model=options.d_model,
            num_heads=options.num_heads,
            num_layers=options.num_layers,
            ffn_size=options.ffn_size,
            dropout=options.dropout,
            max_positions=options.max_len + 2,
            norm_first=options.norm_first,
            tie_embeddings=options.tie_embeddings,
        )

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, int]:
        loss, count = _token_loss(model, trim_padding(batch), "mean")
        return loss, int(count)

    def evaluate(
        self,
        model: nn.Module,
        split: TensorSplit,
        *,
        device: torch.device | str,
        batch_size: int,
    ) -> dict[str, float]:
        """Token loss and greedy BLEU; references are the raw sentences the split's third
        tensor points at (a split of only (src, tgt) is scored against its decoded targets)."""
        if self.tgt_vocabulary is None:
            raise RuntimeError(f"{self.info.name}: call load_splits(data_dir) first")
        vocabulary = self.tgt_vocabulary
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        total_tokens = torch.zeros((), dtype=torch.int64, device=device)
        hypotheses: list[str] = []
        references: list[str] = []
        with evaluation_mode(model) as inner:
            if not isinstance(inner, TranslationTransformer):
                raise TypeError(
                    f"{self.info.name}: expected a TranslationTransformer, got {inner!r}"
                )
            for batch in split.batches(batch_size):
                src, tgt, *rest = trim_padding(to_device(batch, device))
                loss, count = _token_loss(inner, (src, tgt), "sum")
                total_loss += loss
                total_tokens += count
                for ids in inner.greedy_decode(src, self.options.max_len):
                    hypotheses.append(" ".join(vocabulary.decode(ids)))
                if rest:
                    references.extend(self.references[row] for row in rest[0].tolist())
                else:
                    for row in tgt[:, 1:].tolist():
                        words = row[: row.index(EOS_INDEX)] if EOS_INDEX in row else row
                        references.append(" ".join(vocabulary.decode(words)))
        tokens = int(total_tokens.item())
        if tokens == 0:
            raise ValueError(f"workload {self.info.name!r}: the evaluation split is empty")
        bleu = sacrebleu.corpus_bleu(hypotheses, [references], lowercase=True)
        return {"loss": total_loss.item() / tokens, "bleu": float(bleu.score)}
