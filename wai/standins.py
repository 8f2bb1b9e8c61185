"""Honest stand-ins for text-to-text ids whose own weights are not here, computed with the
embedding model (the embedded all-MiniLM-L6-v2 unless configured otherwise), and labelled as
such in `x-wai-model`:

- sentiment (`distilbert-sst-2-int8`): zero-shot. The text and a few descriptions of each label
  are embedded; each label scores by its descriptions' mean cosine similarity to the text, and
  the scores are a softmax of those (summing to 1).
- summarization (`bart-large-cnn`): extractive. The article's sentences are embedded; the most
  central ones (closest to the mean of the other sentences) are kept, in the article's order, up
  to about a third of the article and `max_length` tokens.

Translation has no honest stand-in: an embedding model cannot write another language."""

from __future__ import annotations

from typing import Any

import numpy as np

from wai.text import split_sentences

# each label's descriptions (the text is compared with each; SST-2's two labels)
LABELS: dict[str, tuple[str, ...]] = {
    "NEGATIVE": (
        "This is bad. I hated it, it was terrible and disappointing.",
        "A negative review: awful, boring, a waste of time and money.",
        "I am unhappy, angry and sad about this.",
    ),
    "POSITIVE": (
        "This is good. I loved it, it was great and wonderful.",
        "A positive review: excellent, enjoyable, worth every penny.",
        "I am happy, pleased and delighted with this.",
    ),
}
# cosine similarities are close together; this spreads their softmax (a temperature of 0.05)
SHARPNESS = 20.0
WORDS_PER_TOKEN = 0.75


def label_texts() -> tuple[str, ...]:
    """The descriptions to embed after the text, label by label."""
    return tuple(d for descriptions in LABELS.values() for d in descriptions)


def zero_shot(vectors: np.ndarray) -> list[dict[str, Any]]:
    """`[{label, score}]`, best first, from the vectors of the text then `label_texts()`."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit[1:] @ unit[0]
    means, i = [], 0
    for descriptions in LABELS.values():
        means.append(float(sims[i : i + len(descriptions)].mean()))
        i += len(descriptions)
    logits = np.array(means) * SHARPNESS
    e = np.exp(logits - logits.max())
    scores = e / e.sum()
    ranked = sorted(zip(LABELS, scores, strict=True), key=lambda p: -p[1])
    return [{"label": label, "score": float(s)} for label, s in ranked]


def sentences(text: str) -> list[str]:
    """The article's sentences, as the summary is made of them."""
    parts = split_sentences(text)
    return [p.strip() for p in parts[::2] if p.strip()]


def extractive(text: str, vectors: np.ndarray, max_length: int) -> str:
    """The most central sentences of the article (`vectors`: one per `sentences(text)`), in
    its order: about a third of its words and at most `max_length` tokens (at least one
    sentence)."""
    found = sentences(text)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    # each sentence against the mean of the others: an aside does not pull the centre its way
    n = len(unit)
    others = (unit.sum(axis=0) - unit) / max(n - 1, 1)
    order = np.argsort(-np.einsum("ij,ij->i", unit, others), kind="stable")
    words = sum(len(s.split()) for s in found)
    budget = min(max(words // 3, 1), int(max_length * WORDS_PER_TOKEN))
    keep: list[int] = []
    used = 0
    for i in order.tolist():
        n = len(found[i].split())
        if keep and used + n > budget:
            break  # the next most central does not fit: a less central one never jumps it
        keep.append(i)
        used += n
    return " ".join(found[i] for i in sorted(keep))
