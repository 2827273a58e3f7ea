"""LSTM on PTB: three files as three splits, stateless chunks, token-count loss, perplexity."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from trainers.workloads import MissingDataError, Splits, TensorSplit, load_workload
from trainers.workloads.lstm_ptb import IGNORE_INDEX, LSTMPTBWorkload, chunk_token_stream

from ._checks import token_stream
from ._fixtures import PTB_TEST, PTB_TRAIN, PTB_VALID, write_ptb

SMALL = {"embedding_size": 16, "hidden_size": 16, "num_layers": 2, "dropout": 0.0, "bptt": 7}


def _load(data_dir: Path, **options: object) -> tuple[LSTMPTBWorkload, TensorSplit, TensorSplit]:
    """The workload, its training split and its test split."""
    workload, splits = _load_splits(data_dir, **options)
    return workload, splits.train, splits.test


def _load_splits(data_dir: Path, **options: object) -> tuple[LSTMPTBWorkload, Splits]:
    workload = load_workload("lstm-ptb", {**SMALL, **options})
    assert isinstance(workload, LSTMPTBWorkload)
    return workload, workload.load_splits(data_dir)


def test_vocabulary_is_the_training_words_plus_eos(ptb_data_dir: Path) -> None:
    workload, _, _ = _load(ptb_data_dir)
    assert workload.vocabulary is not None
    words = {word for line in PTB_TRAIN for word in line.split()}
    assert set(workload.vocabulary.tokens) == words | {"<eos>"}


def test_the_three_files_are_the_three_splits(ptb_data_dir: Path) -> None:
    _, splits = _load_splits(ptb_data_dir)
    for split, lines in zip(splits, (PTB_TRAIN, PTB_VALID, PTB_TEST), strict=True):
        targets = split.tensors[1]
        # Every token of the file's stream but the first is a target.
        assert int((targets != IGNORE_INDEX).sum()) == len(token_stream(lines)) - 1


def test_validation_words_outside_the_training_vocabulary_are_unk(ptb_data_dir: Path) -> None:
    workload, splits = _load_splits(ptb_data_dir)
    assert workload.vocabulary is not None
    expected = workload.vocabulary.encode(token_stream(PTB_VALID))
    assert "sunday" in PTB_VALID[0] and "sunday" not in workload.vocabulary.index
    assert expected.count(workload.vocabulary.unk_index) == 3  # on, sunday, and mr. <unk>
    inputs = splits.validation.tensors[0].flatten()
    assert inputs[: len(expected) - 1].tolist() == expected[:-1]


def test_chunks_cover_the_stream_once_with_an_eos_per_line(ptb_data_dir: Path) -> None:
    workload, _, test = _load(ptb_data_dir)
    assert workload.vocabulary is not None
    inputs, targets = test.tensors
    assert inputs.shape[1] == targets.shape[1] == 7
    expected = workload.vocabulary.encode(
        word for line in PTB_TEST for word in [*line.split(), "<eos>"]
    )
    predicted = targets[targets != IGNORE_INDEX].tolist()
    assert predicted == expected[1:]
    assert inputs.flatten()[: len(expected) - 1].tolist() == expected[:-1]
    assert targets[-1, -1] == IGNORE_INDEX  # 26 targets in chunks of 7: the last is padded


def test_chunk_token_stream_exact_multiple() -> None:
    chunks = chunk_token_stream(torch.arange(15), length=7, pad_index=0)
    inputs, targets = chunks.tensors
    assert inputs.tolist() == [list(range(7)), list(range(7, 14))]
    assert targets.tolist() == [list(range(1, 8)), list(range(8, 15))]


def test_loss_counts_target_tokens_not_padding(ptb_data_dir: Path) -> None:
    workload, _, test = _load(ptb_data_dir)
    model = workload.build_model()
    inputs, targets = test.tensors
    loss, count = workload.loss(model, (inputs, targets))
    assert count == int((targets != IGNORE_INDEX).sum()) < targets.numel()
    torch.autograd.backward(loss)
    assert all(parameter.grad is not None for parameter in model.parameters())


def test_count_weighted_micro_batches_equal_the_full_batch(ptb_data_dir: Path) -> None:
    workload, _, test = _load(ptb_data_dir)
    model = workload.build_model()
    inputs, targets = test.tensors
    full, _ = workload.loss(model, (inputs, targets))
    first, first_count = workload.loss(model, (inputs[:2], targets[:2]))
    rest, rest_count = workload.loss(model, (inputs[2:], targets[2:]))
    weighted = (first * first_count + rest * rest_count) / (first_count + rest_count)
    torch.testing.assert_close(weighted, full)


def test_evaluate_reports_perplexity(ptb_data_dir: Path) -> None:
    workload, _, test = _load(ptb_data_dir)
    model = workload.build_model()
    metrics = workload.evaluate(model, test, device="cpu", batch_size=2)
    assert set(metrics) == {"loss", "perplexity"}
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert workload.vocabulary is not None
    # An untrained model is close to uniform over the vocabulary.
    assert 0.5 * len(workload.vocabulary) < metrics["perplexity"] < 2 * len(workload.vocabulary)


def test_tied_weights_share_one_tensor(ptb_data_dir: Path) -> None:
    workload, _, _ = _load(ptb_data_dir, tie_weights=True)
    model = workload.build_model()
    assert model.decoder.weight is model.embedding.weight  # type: ignore[union-attr]
    untied, _, _ = _load(ptb_data_dir, tie_weights=False)
    assert untied.build_model().decoder.weight is not untied.build_model().embedding.weight  # type: ignore[union-attr]


def test_build_model_needs_the_vocabulary_first() -> None:
    with pytest.raises(RuntimeError, match="load_splits"):
        load_workload("lstm-ptb", SMALL).build_model()


def test_missing_files_are_named(tmp_path: Path) -> None:
    write_ptb(tmp_path)
    (tmp_path / "ptb" / "ptb.test.txt").unlink()
    with pytest.raises(MissingDataError) as caught:
        load_workload("lstm-ptb", SMALL).load_splits(tmp_path)
    message = str(caught.value)
    assert "'lstm-ptb'" in message and str(tmp_path) in message
    assert "ptb.test.txt" in message and "ptb.train.txt" not in message
    assert "simple-examples.tgz" in message
