"""Translation: wai against CTranslate2's own Python API on the same converted model, same run.

The model is an M2M100 of opus-mt's size (d_model 512, 6+6 layers, FFN 2048, 8 heads, a
32,000-token vocabulary: 77 M parameters) with random weights, written as Hugging Face lays it
out and converted by wai's converter (no real weights reach this machine; the cost per token is
the real size's whatever the weights say). Both sides run it int8 on every core, beam size 4, at
most 48 tokens a sentence, and both tokenize with SentencePiece.

Each of N clients translates its share of `--sentences` sentences one request at a time:
- wai: `POST /ai/run/@cf/meta/m2m100-1.2b` `{text, target_lang}` over HTTP (its engine batches
  the sentences of concurrent requests);
- anchor: N threads, each calling `Translator.translate_batch([one sentence])` (what an
  application gets from CTranslate2 without a batcher of its own);
- ideal: the sentences N at a time, each N in one `translate_batch` (the most batching N
  clients could give).

Measured in turns (`--rounds`), best round of each. Prints sentences/s per level, wai/anchor,
and wai's rate at N against its own at 1 client.

Usage: .venv/bin/python bench/text_tasks.py [--clients 1,8,32] [--sentences 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serve import free_port, process  # noqa: E402

from tests.text2text_models import Shape, write_m2m100  # noqa: E402
from wai.weights import seq2seq  # noqa: E402

SHAPE = Shape(d=512, heads=8, ffn=2048, layers=6, vocab=32_000, positions=256)
BEAM, MAX_TOKENS = 4, 48
MODEL_ID = "@cf/meta/m2m100-1.2b"
BASE = [
    "The weather is lovely today, shall we go for a walk in the park?",
    "Machine translation turns a sentence in one language into another.",
    "The council approved a new public library next to the central park.",
    "Please remember to water the garden every morning before work.",
    "The train to the airport leaves every twenty minutes from platform four.",
    "She finished the book in one evening and started it again the next day.",
    "Our team will present the results of the study at the conference in May.",
    "The bakery on the corner sells the best bread in the whole neighbourhood.",
]


def model_dir(cache: Path) -> tuple[Path, Path]:
    """The Hugging Face folder (written once) and its converted directory."""
    folder = cache / "m2m100-opus-size"
    if not (folder / "model.safetensors").is_file():
        write_m2m100(folder, seed=11, shape=SHAPE)
        config = (folder / "config.json").read_text()
        config = config.replace('"num_beams": 5', f'"num_beams": {BEAM}')
        (folder / "config.json").write_text(
            config.replace('"max_length": 40', f'"max_length": {MAX_TOKENS}')
        )
    return folder, seq2seq.converted(folder, cache, "m2m100-opus-size")


class Anchor:
    """CTranslate2 and SentencePiece, called directly."""

    def __init__(self, converted: Path) -> None:
        import ctranslate2
        import sentencepiece

        threads = os.cpu_count() or 1
        self.translator = ctranslate2.Translator(
            str(converted),
            device="cpu",
            compute_type="int8",
            inter_threads=1,
            intra_threads=threads,
        )
        self.sp = sentencepiece.SentencePieceProcessor(
            model_file=str(converted / "sentencepiece.bpe.model")
        )

    def translate(self, sentences: list[str]) -> list[str]:
        sources = [["__en__", *self.sp.encode(s, out_type=str), "</s>"] for s in sentences]
        results = self.translator.translate_batch(
            sources,
            target_prefix=[["__de__"]] * len(sources),
            beam_size=BEAM,
            max_decoding_length=MAX_TOKENS,
            no_repeat_ngram_size=2,
        )
        return [self.sp.decode(r.hypotheses[0][1:]) for r in results]

    def clients(self, sentences: list[str], n: int) -> float:
        """Sentences/s with n threads, each translating its share one call at a time."""
        shares = [sentences[i::n] for i in range(n)]

        def one(share: list[str]) -> None:
            for s in share:
                self.translate([s])

        start = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(one, shares))
        return len(sentences) / (time.perf_counter() - start)

    def ideal(self, sentences: list[str], n: int) -> float:
        """Sentences/s when n at a time are translated in one call (batching at its best)."""
        start = time.perf_counter()
        for i in range(0, len(sentences), n):
            self.translate(sentences[i : i + n])
        return len(sentences) / (time.perf_counter() - start)


async def wai_clients(url: str, sentences: list[str], n: int) -> float:
    shares = [sentences[i::n] for i in range(n)]
    async with httpx.AsyncClient(timeout=600) as client:

        async def one(share: list[str]) -> None:
            for s in share:
                r = await client.post(url, json={"text": s, "target_lang": "de"})
                r.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(one(share) for share in shares))
        return len(sentences) / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--sentences", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    cache = Path(os.environ.get("WAI_CACHE_DIR", Path.home() / ".cache" / "wai")) / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    folder, converted = model_dir(cache)
    # one sentence each (a number after the end would be a sentence of its own to wai)
    sentences = [f"({i}) {BASE[i % len(BASE)]}" for i in range(args.sentences)]
    anchor = Anchor(converted)
    anchor.translate(sentences[:2])  # warm
    config = cache / "text_tasks.toml"
    config.write_text(
        f'cache_dir = "{cache}"\n[models.m2m100-opus-size]\npath = "{folder}"\n'
        f'serves = ["{MODEL_ID}"]\ncompute_type = "int8"\nload = "eager"\n'
    )
    port = free_port()
    cmd = [sys.executable, "-m", "wai.cli", "serve", "--port", str(port), "--config", str(config)]
    url = f"http://127.0.0.1:{port}/client/v4/accounts/b/ai/run/{MODEL_ID}"
    best: dict[tuple[str, int], float] = {}
    with process(cmd, f"http://127.0.0.1:{port}/readyz", timeout=300):
        asyncio.run(wai_clients(url, sentences[:2], 1))  # warm
        for _ in range(args.rounds):
            for n in levels:
                runs = {
                    "wai": asyncio.run(wai_clients(url, sentences, n)),
                    "anchor": anchor.clients(sentences, n),
                    "ideal": anchor.ideal(sentences, n),
                }
                for name, rate in runs.items():
                    best[(name, n)] = max(best.get((name, n), 0.0), rate)
    print(f"M2M100 of opus-mt's size, int8, beam {BEAM}, {args.sentences} sentences, "
          f"{os.cpu_count()} cores; sentences/s, best of {args.rounds}")  # fmt: skip
    print(
        f"{'clients':>8} {'wai':>8} {'anchor':>8} {'ideal':>8} {'wai/anchor':>11} {'wai/wai@1':>10}"
    )
    for n in levels:
        w, a, i = best[("wai", n)], best[("anchor", n)], best[("ideal", n)]
        own = w / best[("wai", levels[0])]
        print(f"{n:>8} {w:>8.2f} {a:>8.2f} {i:>8.2f} {w / a:>11.2f} {own:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
