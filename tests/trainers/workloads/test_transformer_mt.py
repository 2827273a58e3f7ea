"""Transformer on Multi30k: tokenisation, vocabularies, padding, token-count loss, BLEU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainers.workloads import MissingDataError, load_workload
from trainers.workloads.transformer_mt import (
    BOS_INDEX,
    EOS_INDEX,
    PAD_INDEX,
    TransformerMTWorkload,
    TranslationPairs,
    collate_translation_pairs,
    tokenize,
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


def _load(
    data_dir: Path, **options: object
) -> tuple[TransformerMTWorkload, TranslationPairs, TranslationPairs]:
    workload = load_workload("transformer-mt", {**SMALL, **options})
    assert isinstance(workload, TransformerMTWorkload)
    train, test = workload.load_datasets(data_dir)
    assert isinstance(train, TranslationPairs) and isinstance(test, TranslationPairs)
    return workload, train, test


def test_tokenize_lowercases_and_splits_on_whitespace() -> None:
    assert tokenize("Two young, White  males.\n") == ["two", "young,", "white", "males."]


def test_vocabularies_come_from_train_with_specials_first(multi30k_data_dir: Path) -> None:
    workload, _, _ = _load(multi30k_data_dir, min_freq=2)
    assert workload.src_vocabulary is not None and workload.tgt_vocabulary is not None
    assert workload.tgt_vocabulary.tokens[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    # min_freq=2 keeps "a" (5 times) and drops "sleeping." (once).
    assert "a" in workload.tgt_vocabulary.index
    assert "sleeping." not in workload.tgt_vocabulary.index
    assert "im" in workload.src_vocabulary.index  # German side


def test_samples_have_eos_and_bos(multi30k_data_dir: Path) -> None:
    _, train, test = _load(multi30k_data_dir)
    assert len(train) == len(MULTI30K_PAIRS) and len(test) == 4
    source, target = train[1]  # "Ein Mann schläft." -> "A man is sleeping."
    assert len(source) == 3 + 1 and source[-1] == EOS_INDEX
    assert len(target) == 4 + 2 and target[0] == BOS_INDEX and target[-1] == EOS_INDEX
    assert test.references[0] == MULTI30K_PAIRS[2][1]


def test_max_len_cuts_long_sentences(multi30k_data_dir: Path) -> None:
    _, train, _ = _load(multi30k_data_dir, max_len=2)
    assert max(len(source) for source in train.sources) == 3
    assert max(len(target) for target in train.targets) == 4


def test_collate_pads_to_the_longest() -> None:
    pairs = [
        (torch.tensor([5, 2]), torch.tensor([1, 6, 7, 2])),
        (torch.tensor([5, 6, 7, 2]), torch.tensor([1, 2])),
    ]
    src, tgt = collate_translation_pairs(pairs)
    assert src.tolist() == [[5, 2, PAD_INDEX, PAD_INDEX], [5, 6, 7, 2]]
    assert tgt.tolist() == [[1, 6, 7, 2], [1, 2, PAD_INDEX, PAD_INDEX]]


def test_loss_counts_non_pad_target_tokens(multi30k_data_dir: Path) -> None:
    workload, train, _ = _load(multi30k_data_dir)
    model = workload.build_model()
    assert workload.collate_fn is not None
    batch = workload.train_transform(workload.collate_fn([train[i] for i in range(4)]))
    loss, count = workload.loss(model, batch)
    assert count == sum(len(train[i][1]) - 1 for i in range(4))  # predicted: all but <bos>
    torch.autograd.backward(loss)
    assert all(parameter.grad is not None for parameter in model.parameters())


def test_count_weighted_micro_batches_equal_the_full_batch(multi30k_data_dir: Path) -> None:
    workload, train, _ = _load(multi30k_data_dir)
    model = workload.build_model().eval()
    collate = collate_translation_pairs
    samples = [train[i] for i in range(len(train))]
    full, _ = workload.loss(model, collate(samples))
    first, first_count = workload.loss(model, collate(samples[:3]))
    rest, rest_count = workload.loss(model, collate(samples[3:]))
    weighted = (first * first_count + rest * rest_count) / (first_count + rest_count)
    torch.testing.assert_close(weighted, full)  # padding does not leak into the loss


def test_evaluate_reports_loss_perplexity_and_bleu(multi30k_data_dir: Path) -> None:
    workload, _, test = _load(multi30k_data_dir)
    model = workload.build_model()
    metrics = workload.evaluate(model, test, device="cpu", batch_size=3)
    assert set(metrics) >= {"test_loss", "perplexity", "bleu"}
    assert 0.0 <= metrics["bleu"] <= 100.0
    assert metrics["test_loss"] > 0
    assert model.training


def test_a_model_that_memorised_the_test_set_scores_high_bleu(tmp_path: Path) -> None:
    pairs = MULTI30K_PAIRS[:4]
    write_multi30k(tmp_path, {"train": pairs, "val": pairs, "test": pairs})
    workload, train, test = _load(tmp_path)
    model = workload.build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = collate_translation_pairs([train[i] for i in range(len(train))])
    for _ in range(60):
        optimizer.zero_grad()
        loss, _ = workload.loss(model, batch)
        torch.autograd.backward(loss)
        optimizer.step()
    metrics = workload.evaluate(model, test, device="cpu", batch_size=4)
    assert metrics["test_loss"] < 0.1
    assert metrics["bleu"] > 90  # greedy decoding reproduces the lower-cased references


def test_reverse_direction(multi30k_data_dir: Path) -> None:
    workload, train, _ = _load(multi30k_data_dir, src_lang="en", tgt_lang="de")
    assert workload.src_vocabulary is not None
    assert "man" in workload.src_vocabulary.index
    assert len(train) == len(MULTI30K_PAIRS)


def test_build_model_needs_the_vocabularies_first() -> None:
    with pytest.raises(RuntimeError, match="load_datasets"):
        load_workload("transformer-mt", SMALL).build_model()


def test_missing_files_are_named(tmp_path: Path) -> None:
    write_multi30k(tmp_path, {"train": MULTI30K_PAIRS})
    with pytest.raises(MissingDataError) as caught:
        load_workload("transformer-mt", SMALL).load_datasets(tmp_path)
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
