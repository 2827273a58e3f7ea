"""Transformer on Multi30k: tokenisation, vocabularies, padded splits, token-count loss, BLEU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainers.workloads import MissingDataError, Splits, load_workload
from trainers.workloads.transformer_mt import (
    BOS_INDEX,
    EOS_INDEX,
    PAD_INDEX,
    TransformerMTWorkload,
    pad_sentences,
    tokenize,
    trim_padding,
)

from ._fixtures import MULTI30K_PAIRS, write_multi30k

SMALL = {
    "d_model": 32,
    "num_heads": 4,
    "num_layers": 1,
    "ffn_size": 64,
    "dropout": 0.0,
    "min_freq": 1,
}


def _load(data_dir: Path, **options: object) -> tuple[TransformerMTWorkload, Splits]:
    workload = load_workload("transformer-mt", {**SMALL, **options})
    assert isinstance(workload, TransformerMTWorkload)
    return workload, workload.load_splits(data_dir)


def _non_pad_lengths(tokens: torch.Tensor) -> list[int]:
    return (tokens != PAD_INDEX).sum(dim=1).tolist()


def test_tokenize_lowercases_and_splits_on_whitespace() -> None:
    assert tokenize("Two young, White  males.\n") == ["two", "young,", "white", "males."]


def test_vocabularies_come_from_train_with_specials_first(multi30k_data_dir: Path) -> None:
    workload, _ = _load(multi30k_data_dir, min_freq=2)
    assert workload.src_vocabulary is not None and workload.tgt_vocabulary is not None
    assert workload.tgt_vocabulary.tokens[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    # min_freq=2 keeps "a" (5 times) and drops "sleeping." (once).
    assert "a" in workload.tgt_vocabulary.index
    assert "sleeping." not in workload.tgt_vocabulary.index
    assert "im" in workload.src_vocabulary.index  # German side


def test_splits_are_the_train_val_and_test_files(multi30k_data_dir: Path) -> None:
    workload, splits = _load(multi30k_data_dir)
    assert [len(split) for split in splits] == [len(MULTI30K_PAIRS), 2, 4]
    for split in splits:
        src, tgt, reference_index = split.tensors
        assert src.dtype == tgt.dtype == reference_index.dtype == torch.int64
        # Padded to the split's longest sentence, not beyond.
        assert src.shape[1] == max(_non_pad_lengths(src))
        assert tgt.shape[1] == max(_non_pad_lengths(tgt))
    references = [workload.references[i] for i in splits.test.tensors[2].tolist()]
    assert references == [target for _, target in MULTI30K_PAIRS[2:6]]


def test_samples_have_eos_and_bos(multi30k_data_dir: Path) -> None:
    _, splits = _load(multi30k_data_dir)
    src, tgt, _ = splits.train.take(
        torch.tensor([1])
    )  # "Ein Mann schläft." -> "A man is sleeping."
    assert _non_pad_lengths(src) == [3 + 1] and src[0, 3] == EOS_INDEX
    assert _non_pad_lengths(tgt) == [4 + 2]
    assert tgt[0, 0] == BOS_INDEX and tgt[0, 5] == EOS_INDEX


def test_the_validation_split_comes_from_the_val_files(tmp_path: Path) -> None:
    val = [("Ein Vogel singt.", "A bird sings."), *MULTI30K_PAIRS[:2]]
    write_multi30k(tmp_path, {"train": MULTI30K_PAIRS, "val": val, "test": MULTI30K_PAIRS[2:4]})
    workload, splits = _load(tmp_path)
    assert workload.tgt_vocabulary is not None
    assert len(splits.validation) == 3
    bird = splits.validation.tensors[1][0]  # <bos> a bird sings. <eos>: "a" is known
    unk = workload.tgt_vocabulary.unk_index
    assert bird[:5].tolist() == [BOS_INDEX, workload.tgt_vocabulary.index["a"], unk, unk, EOS_INDEX]
    assert workload.references[int(splits.validation.tensors[2][0])] == "A bird sings."


def test_max_len_cuts_long_sentences(multi30k_data_dir: Path) -> None:
    _, splits = _load(multi30k_data_dir, max_len=2)
    src, tgt, _ = splits.train.tensors
    assert src.shape[1] == 3 and tgt.shape[1] == 4


def test_pad_sentences_pads_to_the_longest() -> None:
    padded = pad_sentences([[5, 2], [5, 6, 7, 2]])
    assert padded.tolist() == [[5, 2, PAD_INDEX, PAD_INDEX], [5, 6, 7, 2]]


def test_trim_padding_cuts_each_tensor_to_its_longest_row() -> None:
    src = torch.tensor([[5, 2, 0, 0, 0], [5, 6, 2, 0, 0]])
    tgt = torch.tensor([[1, 6, 2, 0], [1, 2, 0, 0]])
    rows = torch.tensor([3, 4])
    trimmed_src, trimmed_tgt, trimmed_rows = trim_padding((src, tgt, rows))
    assert trimmed_src.tolist() == [[5, 2, 0], [5, 6, 2]]
    assert trimmed_tgt.tolist() == [[1, 6, 2], [1, 2, 0]]
    assert trimmed_rows is rows


def test_loss_on_a_taken_batch_equals_the_loss_with_batch_padding(
    multi30k_data_dir: Path,
) -> None:
    workload, splits = _load(multi30k_data_dir)
    model = workload.build_model().eval()
    batch = splits.train.take(torch.tensor([1, 4]))  # two short sentences
    trimmed = trim_padding(batch)
    assert trimmed[0].shape[1] < batch[0].shape[1]  # padded to the split's longest
    with torch.no_grad():
        loss, count = workload.loss(model, batch)
        reference, reference_count = workload.loss(model, trimmed)
    assert count == reference_count == sum(_non_pad_lengths(batch[1])) - 2  # all but <bos>
    torch.testing.assert_close(loss, reference)


def test_count_weighted_micro_batches_equal_the_full_batch(multi30k_data_dir: Path) -> None:
    workload, splits = _load(multi30k_data_dir)
    model = workload.build_model().eval()
    index = torch.arange(len(splits.train))
    full, _ = workload.loss(model, splits.train.take(index))
    first, first_count = workload.loss(model, splits.train.take(index[:3]))
    rest, rest_count = workload.loss(model, splits.train.take(index[3:]))
    weighted = (first * first_count + rest * rest_count) / (first_count + rest_count)
    torch.testing.assert_close(weighted, full)  # padding does not leak into the loss


def test_evaluate_reports_loss_and_bleu(multi30k_data_dir: Path) -> None:
    workload, splits = _load(multi30k_data_dir)
    model = workload.build_model()
    metrics = workload.evaluate(model, splits.test, device="cpu", batch_size=3)
    assert set(metrics) == {"loss", "bleu"}
    assert 0.0 <= metrics["bleu"] <= 100.0
    assert metrics["loss"] > 0
    assert model.training


def test_a_model_that_memorised_the_test_set_scores_high_bleu(tmp_path: Path) -> None:
    pairs = MULTI30K_PAIRS[:4]
    write_multi30k(tmp_path, {"train": pairs, "val": pairs, "test": pairs})
    workload, splits = _load(tmp_path)
    model = workload.build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = splits.train.take(torch.arange(len(splits.train)))
    for _ in range(60):
        optimizer.zero_grad()
        loss, _ = workload.loss(model, batch)
        torch.autograd.backward(loss)
        optimizer.step()
    metrics = workload.evaluate(model, splits.test, device="cpu", batch_size=4)
    assert metrics["loss"] < 0.1
    assert metrics["bleu"] > 90  # greedy decoding reproduces the lower-cased references


def test_reverse_direction(multi30k_data_dir: Path) -> None:
    workload, splits = _load(multi30k_data_dir, src_lang="en", tgt_lang="de")
    assert workload.src_vocabulary is not None
    assert "man" in workload.src_vocabulary.index
    assert len(splits.train) == len(MULTI30K_PAIRS)


def test_build_model_needs_the_vocabularies_first() -> None:
    with pytest.raises(RuntimeError, match="load_splits"):
        load_workload("transformer-mt", SMALL).build_model()


def test_missing_files_are_named(tmp_path: Path) -> None:
    write_multi30k(tmp_path, {"train": MULTI30K_PAIRS})
    with pytest.raises(MissingDataError) as caught:
        load_workload("transformer-mt", SMALL).load_splits(tmp_path)
    message = str(caught.value)
    assert "'transformer-mt'" in message and str(tmp_path) in message
    assert caught.value.missing == [
        "multi30k/val.de",
        "multi30k/val.en",
        "multi30k/test.de",
        "multi30k/test.en",
    ]
    assert "train.de" not in message
    assert "multi30k/dataset" in message
