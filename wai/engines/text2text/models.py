"""The text-to-text models as the engine process runs them, on CTranslate2: a job becomes
`Unit`s (one sequence each: a sentence to translate, a part of an article to summarize, a text
to classify), units of several jobs that decode alike run in one batch, and each job's result is
put back together from its units' outputs.

Long inputs are cut where a sentence ends and rejoined with the whitespace that was there: a
translation sentence by sentence (what M2M100 was trained on), an article in parts that fit the
model's positions, each summarized; a text to classify is cut to the model's window."""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from wai.engines.text2text import wire
from wai.engines.text2text.types import (
    Classify,
    Job,
    Result,
    Scores,
    Summarize,
    Text2TextConfig,
    Text2TextFailed,
    Texts,
    Translate,
)
from wai.text import split_sentences


@dataclass(slots=True)
class Unit:
    """One sequence to run: its tokens, the target's forced first tokens, and its decoding
    options (units with equal keys share a batch)."""

    tokens: list[str]
    prefix: list[str]
    key: Hashable
    where: tuple[int, int] = (0, 0)  # (text, part of it): how outputs are put back together


class Model(Protocol):
    def units(self, job: Job) -> list[Unit]: ...

    def run(self, key: Hashable, units: Sequence[Unit]) -> list[Any]: ...

    def result(self, job: Job, units: list[Unit], outputs: list[Any]) -> Result: ...

    def ready(self) -> wire.Ready: ...


def _threads(config: Text2TextConfig) -> int:
    return config.n_threads or os.cpu_count() or 1


def _weights(path: Path) -> int:
    return (path / "model.bin").stat().st_size


def _chunks(tokens: list[str], size: int) -> list[list[str]]:
    return [tokens[i : i + size] for i in range(0, len(tokens), size)] or [[]]


class Seq2Seq:
    """M2M100 (translation) or BART (summarization) on CTranslate2's Translator."""

    def __init__(self, config: Text2TextConfig, meta: dict[str, Any]) -> None:
        import ctranslate2

        self.path = Path(config.path)
        self.meta = meta
        self.translation = meta["task"] == "translation"
        self.translator = ctranslate2.Translator(
            config.path,
            device="cpu",
            compute_type=config.compute_type,
            inter_threads=1,
            intra_threads=_threads(config),
        )
        self.compute_type = config.compute_type
        self.generation: dict[str, Any] = meta["generation"]
        self.max_tokens = int(meta["max_positions"]) - 2
        self.languages: list[str] = meta.get("languages", [])
        if self.translation:
            import sentencepiece

            self.sp = sentencepiece.SentencePieceProcessor(
                model_file=str(self.path / "sentencepiece.bpe.model")
            )
        else:
            from tokenizers import Tokenizer

            self.tok = Tokenizer.from_file(str(self.path / "tokenizer.json"))

    # -- tokens --

    def _pieces(self, text: str) -> list[str]:
        if self.translation:
            pieces: list[str] = self.sp.encode(text, out_type=str)
            return pieces
        ids = self.tok.encode(text, add_special_tokens=False).ids
        return [self.tok.id_to_token(i) or "<unk>" for i in ids]

    def _text(self, tokens: list[str]) -> str:
        if self.translation:
            # language tokens and fairseq's filler words are not text
            pieces = [t for t in tokens if not t.startswith(("__", "madeupword"))]
            return str(self.sp.decode(pieces))
        ids = [i for t in tokens if (i := self.tok.token_to_id(t)) is not None]
        return str(self.tok.decode(ids, skip_special_tokens=True)).strip()

    # -- jobs --

    def units(self, job: Job) -> list[Unit]:
        if isinstance(job, Translate) and self.translation:
            return self._translation_units(job)
        if isinstance(job, Summarize) and not self.translation:
            return self._summary_units(job)
        raise Text2TextFailed("bad_input", "this model does not take this job")

    def _translation_units(self, job: Translate) -> list[Unit]:
        for lang in (job.source, job.target):
            if lang not in self.languages:
                raise Text2TextFailed("bad_input", f"the model does not know language {lang!r}")
        units = []
        for t, text in enumerate(job.texts):
            for i, part in enumerate(split_sentences(text)):
                if i % 2 == 0 and part.strip():
                    for piece in _chunks(self._pieces(part), self.max_tokens - 1):
                        tokens = [f"__{job.source}__", *piece, "</s>"]
                        units.append(Unit(tokens, [f"__{job.target}__"], ("t",), (t, i)))
        return units

    def _summary_units(self, job: Summarize) -> list[Unit]:
        """The article in parts of at most the model's positions, cut between sentences."""
        g = self.generation
        max_len = max(1, min(job.max_length, self.max_tokens))
        key = ("s", max_len, min(g["min_length"], max_len))
        prefix = ["<s>"] if g["forced_bos"] else []
        parts: list[list[str]] = [[]]
        for i, sentence in enumerate(split_sentences(job.text)):
            pieces = self._pieces(sentence if i % 2 == 0 else " ")
            if i % 2 == 1 and not parts[-1]:
                continue
            for piece in _chunks(pieces, self.max_tokens):
                if len(parts[-1]) + len(piece) > self.max_tokens:
                    parts.append([])
                parts[-1].extend(piece)
        return [Unit(["<s>", *p, "</s>"], prefix, key) for p in parts if p]

    def run(self, key: Hashable, units: Sequence[Unit]) -> list[Any]:
        g = self.generation
        options: dict[str, Any] = {
            "beam_size": g["beam_size"],
            "length_penalty": g["length_penalty"],
            "no_repeat_ngram_size": g["no_repeat_ngram_size"],
        }
        if isinstance(key, tuple) and key[0] == "s":
            options |= {"max_decoding_length": key[1], "min_decoding_length": key[2]}
        else:  # the model's own cap on a translation (M2M100's: 200 tokens)
            options["max_decoding_length"] = min(g["max_length"], self.max_tokens)
        prefixes = [u.prefix or None for u in units]
        results = self.translator.translate_batch(
            [u.tokens for u in units], target_prefix=prefixes, **options
        )
        return [r.hypotheses[0][len(u.prefix) :] for r, u in zip(results, units, strict=True)]

    def result(self, job: Job, units: list[Unit], outputs: list[Any]) -> Result:
        n_in = sum(len(u.tokens) for u in units)
        n_out = sum(len(o) for o in outputs)
        if isinstance(job, Summarize):
            return Texts([" ".join(self._text(o) for o in outputs)], n_in, n_out)
        assert isinstance(job, Translate)
        done: dict[tuple[int, int], list[str]] = {}
        for u, o in zip(units, outputs, strict=True):
            done.setdefault(u.where, []).append(self._text(o))
        texts = []
        for t, text in enumerate(job.texts):
            out = []
            for i, part in enumerate(split_sentences(text)):
                if i % 2 == 1:  # a separator: a line break stays one, other space one space
                    out.append("\n" if "\n" in part else " ")
                else:
                    out.append(" ".join(done.get((t, i), [])))
            texts.append("".join(out).strip())
        return Texts(texts, n_in, n_out)

    def ready(self) -> wire.Ready:
        detail = f"CTranslate2, {self.compute_type}"
        return wire.Ready("CPU", detail, _weights(self.path), self.languages, [], self.max_tokens)


class Classifier:
    """DistilBERT on CTranslate2's Encoder, its head (pre-classifier, ReLU, classifier) on the
    [CLS] vector in numpy."""

    def __init__(self, config: Text2TextConfig, meta: dict[str, Any]) -> None:
        import ctranslate2
        from tokenizers import BertWordPieceTokenizer

        self.path = Path(config.path)
        self.compute_type = config.compute_type
        self.encoder = ctranslate2.Encoder(
            config.path, device="cpu", compute_type=config.compute_type,
            intra_threads=_threads(config),
        )  # fmt: skip
        self.labels: list[str] = meta["labels"]
        self.max_tokens = int(meta["max_positions"])
        self.tok = BertWordPieceTokenizer(
            str(self.path / "vocab.txt"), lowercase=bool(meta.get("lowercase", True))
        )
        self.tok.enable_truncation(self.max_tokens)
        head = np.load(self.path / "head.npz")
        self.w1, self.b1 = head["pre_classifier.weight"], head["pre_classifier.bias"]
        self.w2, self.b2 = head["classifier.weight"], head["classifier.bias"]

    def units(self, job: Job) -> list[Unit]:
        if not isinstance(job, Classify):
            raise Text2TextFailed("bad_input", "this model classifies text only")
        return [Unit(self.tok.encode(job.text).tokens, [], ("c",))]

    def run(self, key: Hashable, units: Sequence[Unit]) -> list[Any]:
        out = self.encoder.forward_batch([u.tokens for u in units])
        cls = np.asarray(out.last_hidden_state, dtype=np.float32)[:, 0, :]
        return list(self.scores(cls))

    def scores(self, cls: np.ndarray) -> np.ndarray:
        hidden = np.maximum(cls @ self.w1.T + self.b1, 0.0)
        logits = hidden @ self.w2.T + self.b2
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs: np.ndarray = e / e.sum(axis=-1, keepdims=True)
        return probs

    def result(self, job: Job, units: list[Unit], outputs: list[Any]) -> Result:
        assert isinstance(job, Classify)
        return Scores(self.labels, [float(s) for s in outputs[0]], len(units[0].tokens))

    def ready(self) -> wire.Ready:
        detail = f"CTranslate2 encoder, {self.compute_type}"
        return wire.Ready("CPU", detail, _weights(self.path), [], self.labels, self.max_tokens)


def load(config: Text2TextConfig) -> Model:
    """The model of a directory weights/seq2seq.py wrote."""
    meta = json.loads((Path(config.path) / "wai.json").read_text())
    if meta["task"] == "text-classification":
        return Classifier(config, meta)
    return Seq2Seq(config, meta)
