"""Write a CTranslate2 (faster-whisper) Whisper model directory as a whisper.cpp ggml file.

The speech benchmark's anchor is whisper.cpp's own `whisper-cli` (bench/whispercpp.sh). For its
real-time factor to mean anything next to wai's it must run the very weights wai's faster-whisper
engine loads, not a separately downloaded `ggml-base.bin` of unknown provenance. This script reads
the CTranslate2 `model.bin` (format: ctranslate2/specs/model_spec.py, `_serialize`) and writes the
file whisper.cpp's loader expects, exactly as its models/convert-pt-to-ggml.py would from
OpenAI's checkpoint: the hparams, the 80 (or 128) slaney mel filters, the byte-level vocabulary,
then every tensor under OpenAI's names, 2-D and conv weights as float16 and the rest as float32.

CTranslate2 fuses attention projections (self-attention q|k|v in `linear_0`, cross-attention k|v
in `linear_1`, the missing key bias stored as zeros) and ties the output projection to the token
embeddings; these are split and checked here. Float16 weights are copied bit for bit. Needs only
numpy (no torch, no network).

Usage: python bench/ct2_whisper_to_ggml.py MODEL_DIR OUT.bin
"""

from __future__ import annotations

import json
import math
import re
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

GGML_MAGIC = 0x67676D6C
SAMPLE_RATE = 16000
N_FFT = 400
# CTranslate2's DataType enum order (include/ctranslate2/types.h); bfloat16 is read by hand.
CT2_DTYPES: tuple[str, ...] = ("<f4", "i1", "<i2", "<i4", "<f2", "bfloat16")

Variables = dict[str, np.ndarray]
Named = Iterator[tuple[str, np.ndarray]]  # (whisper.cpp tensor name, array)


def _bfloat16(raw: np.ndarray) -> np.ndarray:
    return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)


def read_ct2(path: Path) -> Variables:
    """Every variable of a CTranslate2 model.bin by name, aliases resolved (arrays are views)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    buf = memoryview(data)  # type: ignore[arg-type]
    pos = 0

    def take(fmt: str) -> int:
        nonlocal pos
        (value,) = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return int(value)

    def string() -> str:
        nonlocal pos
        size = take("H")  # counts the terminating NUL
        text = bytes(buf[pos : pos + size - 1]).decode("utf-8")
        pos += size
        return text

    version = take("I")
    if version < 5:
        raise SystemExit(f"{path}: CTranslate2 binary version {version} is too old (need >= 5)")
    spec = string()
    if spec != "WhisperSpec":
        raise SystemExit(f"{path}: a {spec}, not a WhisperSpec")
    take("I")  # the spec revision: the tensor layout is the same in every one
    variables: Variables = {}
    for _ in range(take("I")):
        name = string()
        shape = tuple(take("I") for _ in range(take("B")))
        dtype = CT2_DTYPES[take("B")]
        size = take("I")
        raw = data[pos : pos + size]
        pos += size
        array = _bfloat16(raw) if dtype == "bfloat16" else raw.view(dtype)
        variables[name] = array.reshape(shape)
    for _ in range(take("I")):
        alias = string()
        variables[alias] = variables[string()]
    return variables


def _layers(variables: Variables, side: str) -> int:
    """How many `{side}/layer_N` blocks there are (not counting `{side}/layer_norm`)."""
    return len({n.split("/")[1] for n in variables if re.match(rf"{side}/layer_\d+/", n)})


def hparams(variables: Variables) -> list[int]:
    """whisper.cpp's header fields after the magic, in order (the last one is ftype: 1 = f16)."""
    enc_pe = variables["encoder/position_encodings/encodings"]
    dec_pe = variables["decoder/position_encodings/encodings"]
    return [
        variables["decoder/embeddings/weight"].shape[0],  # n_vocab
        enc_pe.shape[0],  # n_audio_ctx
        enc_pe.shape[1],  # n_audio_state
        int(variables["encoder/num_heads"]),
        _layers(variables, "encoder"),
        dec_pe.shape[0],  # n_text_ctx
        dec_pe.shape[1],  # n_text_state
        int(variables["decoder/num_heads"]),
        _layers(variables, "decoder"),
        variables["encoder/conv1/weight"].shape[1],  # n_mels
        1,
    ]


def _hz_to_mel(hz: float) -> float:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
    if hz < 1000.0:
        return 3.0 * hz / 200.0
    return 15.0 + math.log(hz / 1000.0) / (math.log(6.4) / 27.0)


def mel_filters(n_mels: int) -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels) bit for bit: the matrix OpenAI
    saved as whisper/assets/mel_filters.npz, which whisper.cpp's converter copies. librosa rounds
    the triangles to float32 before the slaney normalization; so does this."""
    fftfreqs = np.fft.rfftfreq(n=N_FFT, d=1.0 / SAMPLE_RATE)
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), n_mels + 2)
    log_region = mels >= 15.0
    freqs = 200.0 * mels / 3.0
    freqs[log_region] = 1000.0 * np.exp(math.log(6.4) / 27.0 * (mels[log_region] - 15.0))
    fdiff = np.diff(freqs)
    ramps = np.subtract.outer(freqs, fftfreqs)
    weights = np.zeros((n_mels, len(fftfreqs)), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (freqs[2 : n_mels + 2] - freqs[:n_mels]))[:, np.newaxis]
    return weights


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, inverted: each printable stand-in to its byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def vocabulary(tokenizer_json: Path) -> list[bytes]:
    """The text tokens as raw bytes in id order, up to the first special token (`<|endoftext|>`):
    what whisper.cpp's converter writes; the loader names the special tokens itself."""
    tokenizer = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    first_special = min(t["id"] for t in tokenizer["added_tokens"] if t["special"])
    by_id = {i: token for token, i in tokenizer["model"]["vocab"].items() if i < first_special}
    if sorted(by_id) != list(range(first_special)):
        raise SystemExit(f"{tokenizer_json}: the text token ids are not 0..{first_special - 1}")
    decoder = _byte_decoder()
    return [bytes(decoder[c] for c in by_id[i]) for i in range(first_special)]


def _linear(variables: Variables, src: str, dst: str) -> Named:
    yield f"{dst}.weight", variables[f"{src}/weight"]
    yield f"{dst}.bias", variables[f"{src}/bias"]


def _norm(variables: Variables, src: str, dst: str) -> Named:
    yield f"{dst}.weight", variables[f"{src}/gamma"]
    yield f"{dst}.bias", variables[f"{src}/beta"]


def _split(variables: Variables, src: str, dst: str, parts: tuple[str, ...]) -> Named:
    """A fused projection cut back into `parts` (whisper has no key bias: CTranslate2 stores
    zeros there, which must stay zeros)."""
    weight, bias = variables[f"{src}/weight"], variables[f"{src}/bias"]
    rows = weight.shape[0] // len(parts)
    for i, part in enumerate(parts):
        cut = slice(i * rows, (i + 1) * rows)
        yield f"{dst}.{part}.weight", weight[cut]
        if part == "key":
            if np.any(bias[cut]):
                raise SystemExit(f"{src}/bias: a nonzero key bias, which whisper.cpp cannot hold")
        else:
            yield f"{dst}.{part}.bias", bias[cut]


def _block(variables: Variables, side: str, i: int) -> Named:
    src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
    yield from _norm(variables, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
    qkv = ("query", "key", "value")
    yield from _split(variables, f"{src}/self_attention/linear_0", f"{dst}.attn", qkv)
    yield from _linear(variables, f"{src}/self_attention/linear_1", f"{dst}.attn.out")
    if side == "decoder":
        yield from _norm(variables, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        yield from _linear(variables, f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
        kv = ("key", "value")
        yield from _split(variables, f"{src}/attention/linear_1", f"{dst}.cross_attn", kv)
        yield from _linear(variables, f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
    yield from _norm(variables, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
    yield from _linear(variables, f"{src}/ffn/linear_0", f"{dst}.mlp.0")
    yield from _linear(variables, f"{src}/ffn/linear_1", f"{dst}.mlp.2")


def tensors(variables: Variables) -> Named:
    """Every tensor whisper.cpp loads, under OpenAI's checkpoint names."""
    embeddings = variables["decoder/embeddings/weight"]
    projection = variables.get("decoder/projection/weight", embeddings)
    if projection is not embeddings and not np.array_equal(projection, embeddings):
        raise SystemExit("the output projection is not the token embeddings: not an OpenAI Whisper")
    if np.any(variables.get("decoder/projection/bias", 0)):
        raise SystemExit("the output projection has a bias, which whisper.cpp cannot hold")
    v = variables
    yield "encoder.positional_embedding", v["encoder/position_encodings/encodings"]
    for conv in ("conv1", "conv2"):
        yield from _linear(v, f"encoder/{conv}", f"encoder.{conv}")
    for i in range(_layers(v, "encoder")):
        yield from _block(v, "encoder", i)
    yield from _norm(v, "encoder/layer_norm", "encoder.ln_post")
    yield "decoder.token_embedding.weight", embeddings
    yield "decoder.positional_embedding", v["decoder/position_encodings/encodings"]
    for i in range(_layers(v, "decoder")):
        yield from _block(v, "decoder", i)
    yield from _norm(v, "decoder/layer_norm", "decoder.ln")


F32_NAMES = {
    "encoder.conv1.bias",
    "encoder.conv2.bias",
    "encoder.positional_embedding",
    "decoder.positional_embedding",
}


def write_tensor(out: BinaryIO, name: str, array: np.ndarray) -> None:
    """One tensor record as convert-pt-to-ggml.py writes it in f16 mode: conv biases as [n, 1],
    1-D tensors and the positional embeddings as float32 (ftype 0), the rest float16 (ftype 1);
    dims innermost first."""
    if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
        array = array.reshape(array.shape[0], 1)
    f32 = array.ndim < 2 or name in F32_NAMES
    data = np.ascontiguousarray(array, dtype="<f4" if f32 else "<f2")
    encoded = name.encode("utf-8")
    out.write(struct.pack("<iii", data.ndim, len(encoded), 0 if f32 else 1))
    out.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
    out.write(encoded)
    out.write(data.tobytes())


def convert(model_dir: Path, out_path: Path) -> int:
    """Write the ggml file; returns the number of tensors written."""
    variables = read_ct2(model_dir / "model.bin")
    if any(name.endswith("/weight_scale") for name in variables):
        raise SystemExit(f"{model_dir}: quantized (int8) weights; convert a float16 model instead")
    header = hparams(variables)
    filters = mel_filters(header[9])
    tokens = vocabulary(model_dir / "tokenizer.json")
    count = 0
    tmp = out_path.with_name(out_path.name + ".part")
    with tmp.open("wb") as out:
        out.write(struct.pack("<12i", GGML_MAGIC, *header))
        out.write(struct.pack("<ii", *filters.shape))
        out.write(filters.astype("<f4").tobytes())
        out.write(struct.pack("<i", len(tokens)))
        for token in tokens:
            out.write(struct.pack("<i", len(token)) + token)
        for name, array in tensors(variables):
            write_tensor(out, name, array)
            count += 1
    tmp.replace(out_path)
    return count


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    model_dir, out_path = Path(argv[1]), Path(argv[2])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    count = convert(model_dir, out_path)
    size = out_path.stat().st_size / 1e6
    print(f"{out_path}: {count} tensors, {size:.1f} MB (whisper.cpp ggml, f16)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
