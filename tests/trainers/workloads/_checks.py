"""Assertions and expectations shared by the workloads' tests."""

from __future__ import annotations

from collections import Counter

import torch

from trainers.workloads import Splits, TensorSplit, stratified_split

__all__ = ["assert_held_out", "assert_stratified", "rows", "token_stream"]


def token_stream(lines: list[str]) -> list[str]:
    """A language-model file's tokens: each non-blank line's words, then ``<eos>``."""
    return [token for line in lines if line.split() for token in [*line.split(), "<eos>"]]


def rows(tensor: torch.Tensor) -> Counter[bytes]:
    """The rows of ``tensor`` (first dimension) as a multiset of their bytes."""
    return Counter(row.numpy().tobytes() for row in tensor.flatten(1))


def assert_held_out(
    splits: Splits, whole: TensorSplit, validation_size: int | float, seed: int
) -> None:
    """``splits``' train and validation are ``whole`` partitioned by ``stratified_split``."""
    train_index, validation_index = stratified_split(whole.tensors[1], validation_size, seed)
    assert not set(train_index.tolist()) & set(validation_index.tolist())
    for split, index in ((splits.train, train_index), (splits.validation, validation_index)):
        assert all(
            torch.equal(actual, expected)
            for actual, expected in zip(split.tensors, whole.take(index), strict=True)
        )
    # The same by content: no training row is a validation row; together they are `whole`.
    train_rows, validation_rows = rows(splits.train.tensors[0]), rows(splits.validation.tensors[0])
    assert not train_rows & validation_rows
    assert train_rows + validation_rows == rows(whole.tensors[0])


def assert_stratified(all_labels: torch.Tensor, validation_labels: torch.Tensor) -> None:
    """Each class's validation count is its proportional share, within one sample."""
    classes = int(all_labels.max()) + 1
    per_class = torch.bincount(all_labels, minlength=classes)
    held_out = torch.bincount(validation_labels, minlength=classes)
    share = len(validation_labels) / len(all_labels)
    for label in range(classes):
        assert abs(int(held_out[label]) - share * int(per_class[label])) < 1, label
