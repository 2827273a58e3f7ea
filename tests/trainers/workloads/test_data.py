"""TensorSplit (indexing without collation) and stratified_split (the held-out validation)."""

from __future__ import annotations

import pytest
import torch

from trainers.workloads import Splits, TensorSplit, stratified_split
from trainers.workloads._data import _largest_remainder_shares


def _split(rows: int = 10) -> TensorSplit:
    return TensorSplit(torch.arange(rows * 3).view(rows, 3), torch.arange(rows) % 4)


# --- TensorSplit ------------------------------------------------------------------------------


def test_take_equals_row_indexing() -> None:
    split = _split()
    index = torch.tensor([7, 0, 7, 3])
    inputs, labels = split.take(index)
    assert torch.equal(inputs, split.tensors[0][[7, 0, 7, 3]])
    assert labels.tolist() == [3, 0, 3, 3]


def test_batches_cover_every_row_in_order() -> None:
    split = _split(10)
    batches = list(split.batches(4))
    assert [len(batch[0]) for batch in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([batch[0] for batch in batches]), split.tensors[0])
    assert torch.equal(torch.cat([batch[1] for batch in batches]), split.tensors[1])


def test_batches_larger_than_the_split_give_one_batch() -> None:
    assert [len(batch[0]) for batch in _split(5).batches(1000)] == [5]


def test_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size=0"):
        next(_split().batches(0))


def test_subset_keeps_the_order_of_the_index() -> None:
    subset = _split().subset(torch.tensor([9, 2]))
    assert isinstance(subset, TensorSplit) and len(subset) == 2
    assert subset.tensors[0][:, 0].tolist() == [27, 6]


def test_to_returns_a_split_on_the_device() -> None:
    split = _split()
    moved = split.to("cpu")
    assert isinstance(moved, TensorSplit)
    assert all(torch.equal(a, b) for a, b in zip(moved.tensors, split.tensors, strict=True))
    assert all(tensor.device.type == "cpu" for tensor in moved.tensors)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ((torch.zeros(3, 2), torch.zeros(4)), r"share their length, got \[3, 4\]"),
        ((), "at least one tensor"),
        ((torch.tensor(1.0),), "first"),
    ],
    ids=["length mismatch", "no tensor", "0-d tensor"],
)
def test_bad_tensors_are_refused(tensors: tuple[torch.Tensor, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TensorSplit(*tensors)


def test_splits_are_named() -> None:
    splits = Splits(_split(6), _split(2), _split(3))
    assert [len(split) for split in splits] == [6, 2, 3]
    assert len(splits.validation) == 2 and splits._fields == ("train", "validation", "test")


# --- stratified_split -------------------------------------------------------------------------

# 0: 50, 1: 30, 2: 15, 3: 5 samples, shuffled.
LABELS = torch.repeat_interleave(torch.arange(4), torch.tensor([50, 30, 15, 5]))[
    torch.randperm(100, generator=torch.Generator().manual_seed(1))
]


def test_indices_are_sorted_disjoint_and_cover_everything() -> None:
    train, validation = stratified_split(LABELS, 0.2, seed=0)
    assert train.dtype == validation.dtype == torch.int64
    assert torch.equal(train, train.sort().values)
    assert torch.equal(validation, validation.sort().values)
    assert not set(train.tolist()) & set(validation.tolist())
    assert sorted(train.tolist() + validation.tolist()) == list(range(100))
    assert len(validation) == 20


@pytest.mark.parametrize("validation_size", [0.2, 7, 33, 0.55])
def test_each_class_gives_its_proportional_share(validation_size: int | float) -> None:
    _, validation = stratified_split(LABELS, validation_size, seed=3)
    total = round(validation_size * 100) if isinstance(validation_size, float) else validation_size
    assert len(validation) == total
    held_out = torch.bincount(LABELS[validation], minlength=4)
    for label, size in enumerate([50, 30, 15, 5]):
        assert abs(int(held_out[label]) - total * size / 100) < 1


def test_largest_remainder_gives_ties_to_the_smaller_label() -> None:
    shares = _largest_remainder_shares(4, torch.tensor([5, 5, 5]))
    assert shares.tolist() == [2, 1, 1]
    assert _largest_remainder_shares(3, torch.tensor([1, 10, 1])).tolist() == [0, 3, 0]


def test_the_split_depends_on_the_seed_only() -> None:
    torch.manual_seed(123)
    first = stratified_split(LABELS, 0.2, seed=5)
    state = torch.get_rng_state()
    torch.manual_seed(999)
    second = stratified_split(LABELS, 0.2, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    other = stratified_split(LABELS, 0.2, seed=6)
    assert not torch.equal(first[1], other[1])
    torch.manual_seed(123)
    stratified_split(LABELS, 0.2, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not advanced


def test_an_int_is_a_count_and_a_float_a_fraction() -> None:
    assert len(stratified_split(LABELS, 10, seed=0)[1]) == 10
    assert len(stratified_split(LABELS, 0.1, seed=0)[1]) == 10
    assert len(stratified_split(LABELS, 99, seed=0)[0]) == 1


@pytest.mark.parametrize(
    ("validation_size", "message"),
    [
        (0, "validation_size=0 must be at least 1 sample"),
        (-3, "validation_size=-3"),
        (0.0, "validation_size=0.0 is a fraction"),
        (1.0, "validation_size=1.0 is a fraction"),
        (1.5, "validation_size=1.5"),
        (100, "validation_size=100 leaves no training data"),
        (250, "validation_size=250 leaves no training data"),
        (0.001, "validation_size=0.001 of 100 training samples is less than one sample"),
        (0.999, "validation_size=0.999 leaves no training data"),
        (True, "validation_size=True must be a count"),
    ],
)
def test_refused_sizes_name_validation_size(validation_size: int | float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stratified_split(LABELS, validation_size, seed=0)


def test_labels_must_be_one_dimensional_integers() -> None:
    with pytest.raises(ValueError, match="1-D integer"):
        stratified_split(LABELS.float(), 0.1, seed=0)
    with pytest.raises(ValueError, match="1-D integer"):
        stratified_split(LABELS.view(10, 10), 0.1, seed=0)
