"""Would batching concurrent transcriptions pay on this machine? Four different ~5 s clips of
espeak-ng speech, the embedded Whisper base (CTranslate2 int8, every core, beam 5, English,
word timings), median of rounds:

- four threads on one faster-whisper model of four workers (what wai's engine runs),
- one batch of four through CTranslate2 (encode, generate, align: cross-request batching),
- one after another,
- and the encoder alone, four at batch 1 against one batch of 4.

Usage: .venv/bin/python bench/speech_batching.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.speech_audio import speak  # noqa: E402
from wai.catalog import embedded_asr_parts  # noqa: E402
from wai.settings import Settings  # noqa: E402
from wai.weights.whisper import assembled  # noqa: E402

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please remember to water the garden every morning before work.",
    "A small engine runs the whole model on two ordinary cores.",
    "The library opens at nine and closes late on Thursdays.",
]
WINDOW = 480_000  # 30 s at 16 kHz: what Whisper's encoder reads


def main() -> None:
    from faster_whisper import WhisperModel
    from faster_whisper.audio import decode_audio
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_ctranslate2_storage

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    model_dir = assembled(embedded_asr_parts(), Settings().cache_dir, "whisper-base")
    with tempfile.TemporaryDirectory() as tmp:
        clips = [
            decode_audio(io.BytesIO(speak(s, Path(tmp) / f"{i}.wav")))
            for i, s in enumerate(SENTENCES)
        ]
    m = WhisperModel(
        str(model_dir), device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1,
        num_workers=4, local_files_only=True,
    )  # fmt: skip
    tok = Tokenizer(m.hf_tokenizer, True, task="transcribe", language="en")
    prompt = m.get_prompt(tok, [], without_timestamps=False)

    def one(a: np.ndarray) -> str:
        segments, _ = m.transcribe(a, language="en", beam_size=5, word_timestamps=True)
        return " ".join(s.text for s in segments)

    def features() -> np.ndarray:
        return np.stack(
            [m.feature_extractor(np.pad(a, (0, WINDOW - len(a))))[:, :3000] for a in clips]
        )

    def threads() -> None:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, clips))

    def batch() -> None:
        enc = m.model.encode(get_ctranslate2_storage(features()))
        res = m.model.generate(enc, [prompt] * 4, beam_size=5, max_length=448, suppress_tokens=[-1])
        tokens = [[t for t in r.sequences_ids[0] if t < tok.eot] for r in res]
        m.model.align(enc, tok.sot_sequence, tokens, [len(a) // 160 for a in clips])

    def encoder_singly() -> None:
        f = features()
        for i in range(4):
            m.model.encode(get_ctranslate2_storage(np.ascontiguousarray(f[i : i + 1])))

    def encoder_batched() -> None:
        m.model.encode(get_ctranslate2_storage(features()))

    cases: dict[str, Callable[[], object]] = {
        "4 threads, 4 workers (wai's engine)": threads,
        "one batch of 4 (encode, generate, align)": batch,
        "one after another": lambda: [one(a) for a in clips],
        "the encoder alone, 4 at batch 1": encoder_singly,
        "the encoder alone, one batch of 4": encoder_batched,
    }
    threads()
    batch()  # warm
    walls: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - start)
    anchor = statistics.median(walls["4 threads, 4 workers (wai's engine)"])
    print(f"# bench/speech_batching.py: {os.cpu_count()} cores, rounds {args.rounds}\n")
    print("| | wall | against 4 threads |\n|---|---:|---:|")
    for name, w in walls.items():
        med = statistics.median(w)
        print(f"| {name} | {med:.2f} s | {anchor / med:.2f}x |")


if __name__ == "__main__":
    main()
