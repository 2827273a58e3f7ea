"""LSTM on WikiText-2: the file format, the three splits, and the model shared with lstm-ptb."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from trainers.workloads import MissingDataError, Splits, get_workload_info, load_workload
from trainers.workloads._language_model import IGNORE_INDEX, LSTMLanguageModelWorkload
from trainers.workloads.lstm_wikitext2 import LSTMWikiText2Workload

from ._checks import token_stream
from ._fixtures import WIKITEXT2_TEST, WIKITEXT2_TRAIN, WIKITEXT2_VALID, write_wikitext2

SMALL = {"embedding_size": 16, "hidden_size": 16, "num_layers": 1, "dropout": 0.0, "bptt": 8}


def _load(data_dir: Path, **options: object) -> tuple[LSTMWikiText2Workload, Splits]:
    workload = load_workload("lstm-wikitext2", {**SMALL, **options})
    assert isinstance(workload, LSTMWikiText2Workload)
    return workload, workload.load_splits(data_dir)


def test_it_is_the_ptb_workload_on_other_files() -> None:
    assert issubclass(LSTMWikiText2Workload, LSTMLanguageModelWorkload)
    ptb, wikitext = get_workload_info("lstm-ptb"), get_workload_info("lstm-wikitext2")
    assert wikitext.options_model.model_fields.keys() == ptb.options_model.model_fields.keys()
    assert dict(wikitext.cpu_defaults) == dict(ptb.cpu_defaults)
    assert wikitext.expected_files == (
        "wikitext-2/wiki.train.tokens",
        "wikitext-2/wiki.valid.tokens",
        "wikitext-2/wiki.test.tokens",
    )


def test_blank_lines_are_skipped_and_every_other_line_ends_in_eos(
    wikitext2_data_dir: Path,
) -> None:
    workload, splits = _load(wikitext2_data_dir)
    assert workload.vocabulary is not None
    expected = workload.vocabulary.encode(token_stream(WIKITEXT2_TRAIN))
    inputs, targets = splits.train.tensors
    assert inputs.flatten()[: len(expected) - 1].tolist() == expected[:-1]
    assert targets[targets != IGNORE_INDEX].tolist() == expected[1:]
    eos = workload.vocabulary.index["<eos>"]
    non_blank = sum(1 for line in WIKITEXT2_TRAIN if line.strip())
    assert expected.count(eos) == non_blank < len(WIKITEXT2_TRAIN)


def test_vocabulary_is_the_training_tokens_plus_eos(wikitext2_data_dir: Path) -> None:
    workload, _ = _load(wikitext2_data_dir)
    assert workload.vocabulary is not None
    tokens = {token for line in WIKITEXT2_TRAIN for token in line.split()}
    assert set(workload.vocabulary.tokens) == tokens | {"<eos>"}
    assert {"=", "@-@", "@.@", "@,@", "<unk>"} <= tokens  # headings and split numbers are text
    assert workload.vocabulary.tokens[:2] == ["<unk>", "<eos>"]


def test_the_three_files_are_the_three_splits(wikitext2_data_dir: Path) -> None:
    _, splits = _load(wikitext2_data_dir)
    for split, lines in zip(
        splits, (WIKITEXT2_TRAIN, WIKITEXT2_VALID, WIKITEXT2_TEST), strict=True
    ):
        assert split.tensors[0].shape[1] == 8
        assert int((split.tensors[1] != IGNORE_INDEX).sum()) == len(token_stream(lines)) - 1


def test_validation_tokens_outside_the_training_vocabulary_are_unk(
    wikitext2_data_dir: Path,
) -> None:
    workload, splits = _load(wikitext2_data_dir)
    vocabulary = workload.vocabulary
    assert vocabulary is not None and "lobster" not in vocabulary.index
    stream = token_stream(WIKITEXT2_VALID)
    position = stream.index("lobster")
    assert splits.validation.tensors[0].flatten()[position] == vocabulary.unk_index
    assert (
        splits.validation.tensors[0].flatten()[: len(stream) - 1].tolist()
        == (vocabulary.encode(stream)[:-1])
    )


def test_evaluate_reports_loss_and_perplexity(wikitext2_data_dir: Path) -> None:
    workload, splits = _load(wikitext2_data_dir)
    metrics = workload.evaluate(
        workload.build_model(), splits.validation, device="cpu", batch_size=2
    )
    assert set(metrics) == {"loss", "perplexity"}
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))


def test_build_model_needs_the_vocabulary_first() -> None:
    with pytest.raises(RuntimeError, match="load_splits"):
        load_workload("lstm-wikitext2", SMALL).build_model()


def test_missing_files_are_named(tmp_path: Path) -> None:
    write_wikitext2(tmp_path)
    (tmp_path / "wikitext-2" / "wiki.valid.tokens").unlink()
    with pytest.raises(MissingDataError) as caught:
        load_workload("lstm-wikitext2", SMALL).load_splits(tmp_path)
    message = str(caught.value)
    assert "'lstm-wikitext2'" in message and str(tmp_path) in message
    assert caught.value.missing == ["wikitext-2/wiki.valid.tokens"]
    assert "wikitext-2-v1.zip" in message
