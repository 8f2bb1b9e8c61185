"""Speech: wai's speech engines against the libraries they run, on the same weights and audio,
in one run.

Speech recognition: the embedded Whisper base (CTranslate2, int8, every core), English, beam 5,
word timestamps, as wai's `@cf/openai/whisper` runs it. The anchors are faster-whisper called
in-process on the same model directory: `transcribe` (its default path), and its
`BatchedInferencePipeline` (VAD-cut windows, 8 at a time: what wai runs for audio over 30 s).
Each is measured at 1 and 4 concurrent requests (the anchors with 4 threads on one model of
4 workers) on a short clip (~5 s) and a long one (~40 s) of espeak-ng speech. whisper.cpp's own
CLI is the other anchor, on the same weights: bench/ct2_whisper_to_ggml.py writes wai's
CTranslate2 file as ggml (float16, the bytes copied), and whisper-quantize makes its q8_0 (int8,
as wai computes); bench/whispercpp.sh builds the CLI at a pinned release (skipped with a note
when it cannot be built). It runs as its users run it: a process per request (each loads the
model, about 0.25 s), word timings by DTW (`-dtw base`, as faster-whisper aligns), beam 5, the
cores shared among the concurrent processes, OMP_WAIT_POLICY=passive. The figure is the
real-time factor: seconds of audio transcribed per second of wall time (higher is better).

Text-to-speech: characters per second of wai's `@cf/deepgram/aura-2-en` (MP3) against the same
Piper voice called in-process through piper-tts (raw samples, no encoding).

The engines are measured in turns (`--rounds`), each level's median reported, so that drift
on a shared machine hits all alike.

Usage: .venv/bin/python bench/speech.py [--rounds 3] [--requests 2] [--clients 1,4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serve import free_port, process  # noqa: E402

from tests.speech_audio import encode, samples, speak, wav  # noqa: E402
from wai.catalog import embedded_asr_parts, embedded_tts_path  # noqa: E402
from wai.settings import Settings  # noqa: E402
from wai.weights.whisper import assembled  # noqa: E402

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please remember to water the garden every morning before work.",
    "A small engine runs the whole model on two ordinary cores.",
    "The library opens at nine and closes late on Thursdays.",
]
TTS_TEXT = (
    "Speech synthesis turns written text into audio. This benchmark reads the same two "
    "sentences with each engine."
)


def clips(tmp: Path) -> dict[str, bytes]:
    """A short clip (one sentence) and a long one (sentences with pauses, about 40 s)."""
    parts = []
    for i, s in enumerate(SENTENCES):
        pcm, rate = samples(speak(s, tmp / f"{i}.wav"))
        parts.append(pcm)
    rate = 22050
    pause = np.zeros(rate // 2, np.int16)
    long: list[np.ndarray] = []
    while sum(len(p) for p in long) < 40 * rate:
        for p in parts:
            long += [p, pause]
    return {"short": wav(parts[0], rate), "long": wav(np.concatenate(long), rate)}


def duration(data: bytes) -> float:
    pcm, rate = samples(data)
    return len(pcm) / rate


def timed(fn: Callable[[], object], clients: int, requests: int) -> float:
    """Wall seconds for `clients` threads each calling fn `requests` times."""
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(lambda: [fn() for _ in range(requests)]) for _ in range(clients)]:
            f.result()
    return time.perf_counter() - start


def anchors(model_dir: Path, audio: bytes) -> dict[str, Callable[[], object]]:
    import io

    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from faster_whisper.audio import decode_audio

    model = WhisperModel(
        str(model_dir), device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1,
        num_workers=4, local_files_only=True,
    )  # fmt: skip
    batched = BatchedInferencePipeline(model)
    opts = {"language": "en", "beam_size": 5, "word_timestamps": True}

    def plain() -> object:
        segments, _ = model.transcribe(decode_audio(io.BytesIO(audio)), **opts)
        return list(segments)

    def in_batches() -> object:
        segments, _ = batched.transcribe(decode_audio(io.BytesIO(audio)), batch_size=8, **opts)
        return list(segments)

    return {"faster-whisper": plain, "faster-whisper batched": in_batches}


def whispercpp(model_dir: Path) -> dict[str, Path]:
    """whisper.cpp's CLI and the same weights as ggml: {"f16": file, "q8_0": file, "cli": …};
    empty (with a note) when the CLI cannot be built here."""
    built = subprocess.run(
        ["bash", str(ROOT / "bench" / "whispercpp.sh")], capture_output=True, text=True
    )
    if built.returncode != 0:
        print(f"(whisper.cpp skipped: bench/whispercpp.sh failed: {built.stderr.strip()[-300:]})")
        return {}
    cli = Path(built.stdout.strip().splitlines()[-1])
    f16 = cli.parent.parent.parent / "ggml-whisper-base.bin"
    if not f16.is_file():
        convert = [sys.executable, str(ROOT / "bench" / "ct2_whisper_to_ggml.py")]
        subprocess.run([*convert, str(model_dir), str(f16)], check=True)
    q8 = f16.with_name("ggml-whisper-base-q8_0.bin")
    if not q8.is_file():
        quantize = [str(cli.with_name("whisper-quantize")), str(f16), str(q8), "q8_0"]
        subprocess.run(quantize, check=True, capture_output=True)
    return {"cli": cli, "f16": f16, "q8_0": q8}


def whispercpp_call(
    tools: dict[str, Path], weights: str, wav16: Path, clients: int
) -> Callable[[], object]:
    threads = max(1, (os.cpu_count() or 1) // clients)
    cmd = [str(tools["cli"]), "-m", str(tools[weights]), "-f", str(wav16), "-l", "en", "-bs", "5",
           "-t", str(threads), "-dtw", "base", "-np"]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}

    def call() -> object:
        return subprocess.run(cmd, check=True, capture_output=True, env=env)

    return call


def wav16(data: bytes, path: Path) -> Path:
    """The clip at 16 kHz, mono, 16-bit: what whisper-cli reads."""
    path.write_bytes(encode(data, "wav", "pcm_s16le", 16000))
    return path


def wai_call(base: str, model: str, **kwargs: object) -> Callable[[], object]:
    def call() -> object:
        r = httpx.post(f"{base}/client/v4/accounts/b/ai/run/{model}", timeout=600, **kwargs)  # type: ignore[arg-type]
        r.raise_for_status()
        return r

    return call


def asr_table(
    base: str, model_dir: Path, audio: dict[str, bytes], args: argparse.Namespace, tmp: Path
) -> None:
    levels = [int(c) for c in args.clients.split(",")]
    tools = {} if args.skip_whispercpp else whispercpp(model_dir)
    names = ["faster-whisper", "faster-whisper batched"]
    names += ["whisper.cpp f16", "whisper.cpp q8_0"] if tools else []
    print("\n## Speech recognition: real-time factor (audio s / wall s), median of rounds\n")
    print(f"| clip | clients | wai | {' | '.join(names)} | wai / best anchor |")
    print("|---|---:|---:|" + "---:|" * len(names) + "---:|")
    for name, data in audio.items():
        seconds = duration(data)
        clip16 = wav16(data, tmp / f"{name}16.wav")
        in_process = anchors(model_dir, data)
        for clients in levels:
            engines = {"wai": wai_call(base, "@cf/openai/whisper", content=data), **in_process}
            if tools:
                engines["whisper.cpp f16"] = whispercpp_call(tools, "f16", clip16, clients)
                engines["whisper.cpp q8_0"] = whispercpp_call(tools, "q8_0", clip16, clients)
            runs: dict[str, list[float]] = {e: [] for e in engines}
            for _ in range(args.rounds):
                for engine, fn in engines.items():
                    wall = timed(fn, clients, args.requests)
                    runs[engine].append(seconds * clients * args.requests / wall)
            med = {e: statistics.median(v) for e, v in runs.items()}
            best = max(med[n] for n in names)
            cells = " | ".join(f"{med[n]:.2f}" for n in names)
            print(
                f"| {name} ({seconds:.0f} s) | {clients} | {med['wai']:.2f} | {cells} | "
                f"{med['wai'] / best:.2f}x |"
            )


def tts_table(base: str, args: argparse.Namespace) -> None:
    from piper.voice import PiperVoice

    voice = PiperVoice.load(embedded_tts_path())

    def direct() -> object:
        return [c.audio_int16_bytes for c in voice.synthesize(TTS_TEXT)]

    engines = {
        "wai": wai_call(base, "@cf/deepgram/aura-2-en", json={"text": TTS_TEXT}),
        "piper-tts": direct,
    }
    print("\n## Text-to-speech: characters per second, median of rounds\n")
    print("| clients | wai (MP3) | piper-tts in-process (raw) | wai / piper-tts |")
    print("|---:|---:|---:|---:|")
    for clients in [int(c) for c in args.clients.split(",")]:
        runs: dict[str, list[float]] = {e: [] for e in engines}
        for _ in range(args.rounds):
            for engine, fn in engines.items():
                wall = timed(fn, clients, args.requests)
                runs[engine].append(len(TTS_TEXT) * clients * args.requests / wall)
        med = {e: statistics.median(v) for e, v in runs.items()}
        ratio = med["wai"] / med["piper-tts"]
        print(f"| {clients} | {med['wai']:.0f} | {med['piper-tts']:.0f} | {ratio:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=2, help="requests per client per round")
    ap.add_argument("--clients", default="1,4")
    ap.add_argument("--skip-tts", action="store_true")
    ap.add_argument("--skip-whispercpp", action="store_true")
    args = ap.parse_args()
    settings = Settings()
    model_dir = assembled(embedded_asr_parts(), settings.cache_dir, "whisper-base")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        audio = clips(Path(tmp))
        cmd = [sys.executable, "-m", "wai.cli", "serve", "--port", str(port)]
        env = {"WAI_USAGE_DB": str(Path(tmp) / "usage.db"), "WAI_MAX_WAITING": "64"}
        with process(cmd, f"{base}/healthz", env=env, timeout=300):
            wai_call(base, "@cf/openai/whisper", content=audio["short"])()  # loaded
            wai_call(base, "@cf/deepgram/aura-2-en", json={"text": "Hi."})()
            cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
            model_name = next(
                (ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), "?"
            )
            print(
                f"# bench/speech.py: {os.cpu_count()} cores ({model_name}), "
                f"rounds {args.rounds}, {args.requests} requests per client"
            )
            asr_table(base, model_dir, audio, args, Path(tmp))
            if not args.skip_tts:
                tts_table(base, args)


if __name__ == "__main__":
    main()
