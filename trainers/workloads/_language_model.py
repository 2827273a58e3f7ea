"""The word-level LSTM language model shared by lstm-ptb and lstm-wikitext2.

Model: Zaremba, Sutskever & Vinyals, "Recurrent Neural Network Regularization", 2014
(arXiv:1409.2329): embedding, a multi-layer LSTM with dropout on non-recurrent connections, and
a softmax layer, optionally tied to the embedding (Press & Wolf, 2017, arXiv:1608.05859; Inan
et al., 2017). Data: three pre-tokenized text files (train, valid, test); as in PyTorch's
word_language_model example each line's whitespace-separated tokens plus ``<eos>`` join one
token stream per file, except that lines without tokens are skipped; the vocabulary is the
training file's tokens (rare words are already ``<unk>`` in both corpora).

Deviation from the classic stateful setup: every sample is one contiguous chunk of ``bptt``
tokens (input, and the target shifted by one) and the LSTM state starts at zero for each chunk
instead of being carried across batches. Samples are therefore independent, so the loop can
shard and shuffle them; the cost is a little context at each chunk start, i.e. a somewhat
higher perplexity than a stateful model of the same size.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.workloads._base import (
    Batch,
    Splits,
    TensorSplit,
    Workload,
    evaluation_mode,
    to_device,
)
from trainers.workloads._options import LSTMPTBOptions
from trainers.workloads._text import Vocabulary, perplexity, read_lines

__all__ = [
    "EOS",
    "IGNORE_INDEX",
    "UNK",
    "LSTMLanguageModel",
    "LSTMLanguageModelWorkload",
    "chunk_token_stream",
    "read_token_lines",
]

IGNORE_INDEX = -100
"""Target of the padding after the last chunk's final token; the loss skips it."""

EOS, UNK = "<eos>", "<unk>"


def read_token_lines(path: Path) -> list[list[str]]:
    """Each line's whitespace-separated tokens plus ``<eos>``; lines without tokens skipped."""
    return [[*tokens, EOS] for tokens in map(str.split, read_lines(path)) if tokens]


def chunk_token_stream(stream: Tensor, length: int, pad_index: int) -> TensorSplit:
    """Non-overlapping ``(input, target)`` chunks of ``length`` tokens; targets are shifted.

    The last, shorter chunk is padded (input ``pad_index``, target :data:`IGNORE_INDEX`), so
    every token of ``stream`` after the first is predicted exactly once.
    """
    num_chunks = math.ceil((len(stream) - 1) / length)
    padded_length = num_chunks * length + 1
    inputs = torch.full((padded_length,), pad_index, dtype=torch.int64)
    targets = torch.full((padded_length,), IGNORE_INDEX, dtype=torch.int64)
    inputs[: len(stream)] = stream
    targets[: len(stream)] = stream
    return TensorSplit(inputs[:-1].view(num_chunks, length), targets[1:].view(num_chunks, length))


class LSTMLanguageModel(nn.Module):
    """Embedding -> dropout -> LSTM -> dropout -> linear; logits [B, T, vocab]."""

    def __init__(
        self,
        vocab_size: int,
        *,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        tie_weights: bool,
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.lstm = nn.LSTM(
            embedding_size,
            hidden_size,
            num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.decoder = nn.Linear(hidden_size, vocab_size)
        # Zaremba et al.'s uniform initialisation (as in PyTorch's word_language_model).
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if tie_weights:
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens: Tensor) -> Tensor:
        hidden_states, _ = self.lstm(self.dropout(self.embedding(tokens)))
        logits: Tensor = self.decoder(self.dropout(hidden_states))
        return logits


def _token_loss(model: nn.Module, batch: Batch, reduction: str) -> tuple[Tensor, Tensor]:
    inputs, targets = batch[0], batch[1]
    logits = model(inputs)
    loss = F.cross_entropy(
        logits.flatten(0, 1).float(),
        targets.flatten(),
        ignore_index=IGNORE_INDEX,
        reduction=reduction,
    )
    return loss, (targets != IGNORE_INDEX).sum()


class LSTMLanguageModelWorkload(Workload[LSTMPTBOptions]):
    """Word-level language modelling; batches are ``(int64 inputs [B, bptt], int64 targets)``.

    A subclass sets ``info``, whose ``expected_files`` are the (train, valid, test) token files
    in that order. Call :meth:`load_splits` before :meth:`build_model`: the vocabulary comes
    from the training file.
    """

    def __init__(self, options: LSTMPTBOptions) -> None:
        super().__init__(options)
        self.vocabulary: Vocabulary | None = None

    def load_splits(self, data_dir: Path) -> Splits:
        self.require_files(data_dir, self.info.expected_files)
        train_file, valid_file, test_file = self.info.expected_files
        train_lines = read_token_lines(data_dir / train_file)
        vocabulary = Vocabulary.in_order_of_appearance(
            train_lines, specials=(UNK, EOS), unk_token=UNK
        )
        self.vocabulary = vocabulary
        return Splits(
            self._chunks(train_lines, vocabulary, train_file),
            self._chunks(read_token_lines(data_dir / valid_file), vocabulary, valid_file),
            self._chunks(read_token_lines(data_dir / test_file), vocabulary, test_file),
        )

    def _chunks(self, lines: list[list[str]], vocabulary: Vocabulary, name: str) -> TensorSplit:
        ids = vocabulary.encode(token for line in lines for token in line)
        if len(ids) < 2:
            raise ValueError(f"workload {self.info.name!r}: {name} has fewer than two tokens")
        stream = torch.tensor(ids, dtype=torch.int64)
        return chunk_token_stream(stream, self.options.bptt, vocabulary.index[EOS])

    def build_model(self) -> nn.Module:
        if self.vocabulary is None:
            raise RuntimeError(
                f"{self.info.name}: call load_splits(data_dir) before build_model(); the "
                "vocabulary size comes from the training data"
            )
        options = self.options
        return LSTMLanguageModel(
            len(self.vocabulary),
            embedding_size=options.embedding_size,
            hidden_size=options.hidden_size,
            num_layers=options.num_layers,
            dropout=options.dropout,
            tie_weights=options.tie_weights,
        )

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, int]:
        loss, count = _token_loss(model, batch, "mean")
        return loss, int(count)

    def evaluate(
        self,
        model: nn.Module,
        split: TensorSplit,
        *,
        device: torch.device | str,
        batch_size: int,
    ) -> dict[str, float]:
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        total_tokens = torch.zeros((), dtype=torch.int64, device=device)
        with evaluation_mode(model) as inner:
            for batch in split.batches(batch_size):
                loss, count = _token_loss(inner, to_device(batch, device), "sum")
                total_loss += loss
                total_tokens += count
        tokens = int(total_tokens.item())
        if tokens == 0:
            raise ValueError(f"workload {self.info.name!r}: the evaluation split is empty")
        mean_loss = total_loss.item() / tokens
        return {"loss": mean_loss, "perplexity": perplexity(mean_loss)}
