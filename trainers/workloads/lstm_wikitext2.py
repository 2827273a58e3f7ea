"""Word-level LSTM language model on WikiText-2 (the paper's language-modelling task).

Data: Merity, Xiong, Bradbury & Socher, "Pointer Sentinel Mixture Models", 2016
(arXiv:1609.07843), the tokenized version: ``wikitext-2/wiki.{train,valid,test}.tokens``,
Wikipedia articles with tokens separated by single spaces, rare words already ``<unk>``,
blank lines between paragraphs and headings such as `` = = Title = = `` on lines of their own
(kept: they are text to model). The three files are the train, validation and test splits.
The model, the chunking and the loss are those of lstm-ptb
(:mod:`trainers.workloads._language_model`).
"""

from __future__ import annotations

from trainers.workloads._language_model import LSTMLanguageModelWorkload
from trainers.workloads._registry import BUILTIN_WORKLOADS

__all__ = ["LSTMWikiText2Workload"]


class LSTMWikiText2Workload(LSTMLanguageModelWorkload):
    """WikiText-2 language modelling (``wikitext-2/wiki.{train,valid,test}.tokens``)."""

    info = BUILTIN_WORKLOADS["lstm-wikitext2"]
