"""The numpy converter (Hugging Face safetensors -> CTranslate2) against the numpy reference on
tiny random models of the real architectures: greedy tokens equal for M2M100 and BART,
classification scores within 1e-4 for DistilBERT; and the engine's text handling."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import ctranslate2
import numpy as np
import pytest

from tests.text2text_models import (
    Seq2SeqReference,
    distilbert_scores,
    write_bart,
    write_distilbert,
    write_m2m100,
)
from wai.engines.text2text.models import load
from wai.engines.text2text.types import Classify, Summarize, Text2TextConfig
from wai.text import split_sentences
from wai.weights import seq2seq


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("seq2seq")


@pytest.mark.parametrize("arch", ["m2m100", "bart"])
def test_greedy_tokens_equal_the_reference(tmp: Path, arch: str) -> None:
    src = (write_m2m100 if arch == "m2m100" else write_bart)(tmp / arch)
    out = seq2seq.converted(src, tmp / "cache", arch)
    vocab = json.loads((out / "shared_vocabulary.json").read_text())
    index = {t: i for i, t in enumerate(vocab)}
    reference = Seq2SeqReference(src)
    translator = ctranslate2.Translator(str(out), compute_type="float32")
    rng = random.Random(0)
    lengths = []
    for _ in range(8):
        words = [vocab[rng.randrange(5, 80)] for _ in range(rng.randrange(2, 14))]
        if arch == "m2m100":
            source, prefix = ["__en__", *words, "</s>"], [rng.choice(["__fr__", "__de__"])]
        else:
            source, prefix = ["<s>", *words, "</s>"], ["<s>"]
        got = translator.translate_batch(
            [source], target_prefix=[prefix], beam_size=1, max_decoding_length=24
        )[0].hypotheses[0]
        ids = reference.greedy([index[t] for t in source], [index[t] for t in prefix], 24 - 1)
        assert got == [vocab[i] for i in ids]
        lengths.append(len(got))
    assert max(lengths) > 3  # real sequences, not an immediate end


def test_classifier_scores_equal_the_reference(tmp: Path) -> None:
    src = write_distilbert(tmp / "distilbert")
    out = seq2seq.converted(src, tmp / "cache", "distilbert")
    meta = json.loads((out / "wai.json").read_text())
    assert meta["labels"] == ["NEGATIVE", "POSITIVE"] and meta["task"] == "text-classification"
    model = load(Text2TextConfig(path=str(out), name="d", compute_type="float32"))
    for text in ("I loved this film", "the lazy dog hated the ending", "A"):
        job = Classify(text)
        units = model.units(job)
        result = model.result(job, units, model.run(units[0].key, units))
        ids = [model.tok.token_to_id(t) for t in units[0].tokens]  # type: ignore[attr-defined]
        want = distilbert_scores(src, ids)
        assert np.allclose(result.scores, want, atol=1e-4)  # type: ignore[union-attr]


def test_sinusoidal_positions_are_fairseqs_after_the_padding_rows() -> None:
    table = seq2seq.sinusoidal(10, 8)
    assert table.shape == (10, 8)
    half = 4
    freq = math.exp(-math.log(10000) / (half - 1))
    pos = 0 + 2  # the first position after fairseq's padding index
    assert table[0, 1] == pytest.approx(math.sin(pos * freq), abs=1e-6)
    assert table[0, half + 1] == pytest.approx(math.cos(pos * freq), abs=1e-6)


def test_a_folder_is_converted_once_and_again_when_it_changes(tmp: Path) -> None:
    src = write_bart(tmp / "bart-again", seed=5)
    out = seq2seq.converted(src, tmp / "again", "b")
    first = (out / "model.bin").stat().st_mtime_ns
    assert seq2seq.converted(src, tmp / "again", "b") == out
    assert (out / "model.bin").stat().st_mtime_ns == first
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "num_beams": 2}))
    out = seq2seq.converted(src, tmp / "again", "b")
    assert json.loads((out / "wai.json").read_text())["generation"]["beam_size"] == 2


def test_folders_it_cannot_convert_are_refused_by_name(tmp: Path) -> None:
    empty = tmp / "empty"
    empty.mkdir()
    assert seq2seq.task_of(empty) is None
    with pytest.raises(seq2seq.ConversionError, match="not an M2M100, BART or DistilBERT"):
        seq2seq.write(empty, tmp / "out-empty")
    src = write_m2m100(tmp / "no-spm", seed=3)
    (src / "sentencepiece.bpe.model").unlink()
    with pytest.raises(seq2seq.ConversionError, match=r"sentencepiece\.bpe\.model is missing"):
        seq2seq.write(src, tmp / "out-no-spm")


@pytest.mark.parametrize(
    "text",
    [
        "One. Two! Three?",
        "A line\nanother line.\n\n  Indented after a blank line.",
        "No boundary at all",
        "Abbrev. e.g. this one.   Spaces kept.",
        "中文句子\u3002第二句\uff01",
        "",
    ],
)
def test_sentences_rejoin_to_the_text(text: str) -> None:
    parts = split_sentences(text)
    assert "".join(parts) == text
    assert all(not p.strip() for p in parts[1::2])  # separators are whitespace only


def test_a_long_article_is_summarized_in_parts_that_fit(tmp: Path) -> None:
    src = write_bart(tmp / "bart-long", seed=7)
    out = seq2seq.converted(src, tmp / "cache", "bart-long")
    model = load(Text2TextConfig(path=str(out), name="b", compute_type="float32"))
    article = " ".join(f"Sentence number {i} says something about the fox." for i in range(40))
    units = model.units(Summarize(article, 20))
    assert len(units) > 1
    assert all(len(u.tokens) <= 64 for u in units)  # the tiny model's 64 positions
