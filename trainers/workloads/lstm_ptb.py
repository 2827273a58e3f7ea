"""Word-level LSTM language model on the Penn Treebank (Mikolov et al.'s 10k-word version).

Data: ``ptb/ptb.{train,valid,test}.txt``, one sentence per line (lower case, numbers as ``N``,
rare words as ``<unk>``); the three files are the train, validation and test splits. The
model, the chunking and the loss are those of :mod:`trainers.workloads._language_model`.
"""

from __future__ import annotations

from trainers.workloads._language_model import (
    IGNORE_INDEX,
    LSTMLanguageModel,
    LSTMLanguageModelWorkload,
    chunk_token_stream,
)
from trainers.workloads._registry import BUILTIN_WORKLOADS
from trainers.workloads._text import perplexity

__all__ = [
    "IGNORE_INDEX",
    "LSTMLanguageModel",
    "LSTMPTBWorkload",
    "chunk_token_stream",
    "perplexity",
]


class LSTMPTBWorkload(LSTMLanguageModelWorkload):
    """PTB language modelling (``ptb/ptb.{train,valid,test}.txt``)."""

    info = BUILTIN_WORKLOADS["lstm-ptb"]
