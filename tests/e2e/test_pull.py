"""`wai pull` against a local server speaking the Hub's download protocol (tests/hub_server.py;
these machines cannot reach the Hub), serving a real GGUF (the embedded model's file) under
curated-looking entries: a pull with progress, an interrupted pull resumed, a wrong SHA-256
refused and removed, a file larger than the disk refused before any byte, a gated repository's
refusal turned into the license message, and the pulled id then served by its file with no
configuration."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import LLAMA2, ROOT, TOKEN, Server, start_server, stop_server
from tests.hub_server import HubFixture, serve
from tests.speech_audio import SENTENCES, recovered, speak
from wai.catalog import embedded_asr_parts, embedded_model_path, embedded_tts_path
from wai.settings import Settings
from wai.weights.whisper import assembled

REPO, FILE = "wai-test/smollm2-gguf", "smollm2.Q4_1.gguf"
TINY = "@cf/tinyllama/tinyllama-1.1b-chat-v1.0"  # pulled and served
BAD, HUGE, GATED = (
    "@cf/microsoft/phi-2",
    "@cf/meta/llama-3.2-1b-instruct",
    "@cf/meta/llama-3.2-3b-instruct",
)
HF_TOKEN = "hf_test_token_with_access"
# speech models: a CTranslate2 folder and a Piper voice, each a main file and its companions
ASR, ASR_REPO, ASR_NAME = "@cf/openai/whisper-tiny-en", "wai-test/faster-whisper", "fw-test"
VOICE, VOICE_REPO = "@cf/deepgram/aura-1", "wai-test/piper-voices"
VOICE_FILE = "en/en_US/test/medium/en_US-test-medium.onnx"


def _speech_files() -> tuple[dict[str, Path], dict[str, dict[str, object]]]:
    """The embedded Whisper base and Piper voice as Hub repositories, and their table entries
    (every file's SHA-256 stated, as the packaged table states them)."""
    whisper = assembled(embedded_asr_parts(), Settings().cache_dir, "whisper-base")
    voice = embedded_tts_path()
    files = {f"{ASR_REPO}/{f.name}": f for f in sorted(whisper.iterdir())}
    files[f"{VOICE_REPO}/{VOICE_FILE}"] = voice
    files[f"{VOICE_REPO}/{VOICE_FILE}.json"] = voice.with_name(voice.name + ".json")

    def part(key: str) -> dict[str, object]:
        data = files[key].read_bytes()
        return {
            "file": key.split("/", 2)[2],
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    asr = [k for k in files if k.startswith(ASR_REPO)]
    main = f"{ASR_REPO}/model.bin"
    entries = {
        ASR: {"repo": ASR_REPO, **part(main), "folder": True, "served_as": ASR_NAME,
              "companions": [part(k) for k in asr if k != main]},
        VOICE: {"repo": VOICE_REPO, **part(f"{VOICE_REPO}/{VOICE_FILE}"),
                "companions": [part(f"{VOICE_REPO}/{VOICE_FILE}.json")]},
    }  # fmt: skip
    return files, entries


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubFixture, Path]]:
    tmp = tmp_path_factory.mktemp("hub")
    gguf = embedded_model_path()
    speech, entries = _speech_files()
    fixture = HubFixture(
        files={
            **speech,
            f"{REPO}/{FILE}": gguf,
            f"{REPO}/bad.gguf": gguf,
            f"{REPO}/huge.gguf": gguf,
            f"wai-gated/model-gguf/{FILE}": gguf,
        },
        gated={"wai-gated/model-gguf": HF_TOKEN},
        sizes={f"{REPO}/huge.gguf": 1 << 60},
    )
    server = serve(fixture)
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    entry = {"license": "apache-2.0", "quant": "Q4_1", "why": "the test's file"}
    table = {
        "sources": {
            TINY: {**entry, "repo": REPO, "file": FILE, "sha256": sha},
            BAD: {**entry, "repo": REPO, "file": "bad.gguf", "sha256": "0" * 64},
            HUGE: {**entry, "repo": REPO, "file": "huge.gguf"},
            GATED: {**entry, "repo": "wai-gated/model-gguf", "file": FILE, "gated": True},
            **{mid: {**entry, "quant": "F16", **e} for mid, e in entries.items()},
        }
    }
    (tmp / "sources.json").write_text(json.dumps(table))
    yield fixture, tmp
    server.shutdown()
    server.server_close()


def _env(hub: tuple[HubFixture, Path], cache: Path, **extra: str) -> dict[str, str]:
    fixture, tmp = hub
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    hf = {"HF_ENDPOINT": fixture.url, "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1"}
    return {**env, **hf, "WAI_HUB_SOURCES": str(tmp / "sources.json"), **extra}


def _pull(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wai.cli", "pull", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _blobs(cache: Path, repo: str = REPO) -> list[Path]:
    folder = cache / f"models--{repo.replace('/', '--')}" / "blobs"
    return sorted(p for p in folder.iterdir() if p.suffix != ".lock") if folder.is_dir() else []


def test_a_pull_downloads_checks_and_says_what_next(
    hub: tuple[HubFixture, Path], tmp_path: Path
) -> None:
    out = _pull(_env(hub, tmp_path), TINY)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [
        line.strip().split("%")[0] for line in lines if line.strip().endswith(")") and "%" in line
    ][-1] == "100"
    assert any(line.startswith("next: wai serve") and TINY in line for line in lines)
    (blob,) = _blobs(tmp_path)
    assert blob.read_bytes() == embedded_model_path().read_bytes()
    listed = _pull(_env(hub, tmp_path), "--list").stdout
    (row,) = [line for line in listed.splitlines() if line.startswith(TINY)]
    assert "93.8 MiB" in row and f"{REPO}/{FILE}" in row


def test_an_interrupted_pull_resumes(hub: tuple[HubFixture, Path], tmp_path: Path) -> None:
    fixture, _ = hub
    fixture.slow, fixture.ranges[:] = True, []
    proc = subprocess.Popen(
        [sys.executable, "-m", "wai.cli", "pull", TINY], cwd=ROOT, env=_env(hub, tmp_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not any(
        p.name.endswith(".incomplete") and p.stat().st_size > 20 << 20 for p in _blobs(tmp_path)
    ):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    fixture.slow = False
    out = _pull(_env(hub, tmp_path), TINY)
    assert out.returncode == 0, out.stderr
    assert fixture.ranges[0] == 0 and fixture.ranges[-1] > 20 << 20  # the second asked for the rest
    (blob,) = _blobs(tmp_path)
    assert blob.read_bytes() == embedded_model_path().read_bytes()


def test_a_wrong_sha256_is_refused_and_nothing_stays(
    hub: tuple[HubFixture, Path], tmp_path: Path
) -> None:
    out = _pull(_env(hub, tmp_path), BAD)
    assert out.returncode == 1
    assert "SHA-256" in out.stderr and "removed" in out.stderr
    assert _blobs(tmp_path) == []
    assert not list(tmp_path.glob("models--*/snapshots/*/bad.gguf"))


def test_a_file_larger_than_the_disk_is_refused_before_downloading(
    hub: tuple[HubFixture, Path], tmp_path: Path
) -> None:
    fixture, _ = hub
    fixture.ranges[:] = []
    out = _pull(_env(hub, tmp_path), HUGE)
    assert out.returncode == 1 and "free" in out.stderr and "HF_HUB_CACHE" in out.stderr
    assert fixture.ranges == []  # not one byte asked for


def test_a_gated_repository_names_its_license_page(
    hub: tuple[HubFixture, Path], tmp_path: Path
) -> None:
    fixture, _ = hub
    out = _pull(_env(hub, tmp_path), GATED)
    assert out.returncode == 1
    assert f"{fixture.url}/wai-gated/model-gguf" in out.stderr and "HF_TOKEN" in out.stderr
    ok = _pull(_env(hub, tmp_path, HF_TOKEN=HF_TOKEN), GATED)
    assert ok.returncode == 0, ok.stderr


def test_an_unknown_id_and_an_hf_file(hub: tuple[HubFixture, Path], tmp_path: Path) -> None:
    out = _pull(_env(hub, tmp_path), "@cf/acme/nothing")
    assert out.returncode == 1 and "--list" in out.stderr
    out = _pull(_env(hub, tmp_path), f"hf:{REPO}/{FILE}")
    assert out.returncode == 0, out.stderr  # the Hub's announced SHA-256 checked
    assert 'path = "hf:' in out.stdout


@pytest.fixture(scope="module")
def pulled_server(
    hub: tuple[HubFixture, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("pulled")
    cache = tmp / "hub"
    for model_id in (TINY, ASR, VOICE):
        out = _pull(_env(hub, cache), model_id)
        assert out.returncode == 0, out.stderr
    env = _env(hub, cache, WAI_USAGE_DB=str(tmp / "usage.db"))
    srv = start_server(
        tmp, "--token", TOKEN, env={k: v for k, v in env.items() if k.startswith(("HF_", "WAI_"))}
    )
    yield srv
    stop_server(srv)


def test_a_pulled_id_is_served_by_its_file_with_no_configuration(pulled_server: Server) -> None:
    body = {"prompt": "The capital of France is", "raw": True, "max_tokens": 12, "temperature": 0}
    r = requests.post(
        pulled_server.run_url(TINY), json=body, headers=pulled_server.auth, timeout=120
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-wai-model"] == "smollm2.Q4_1"
    # the same file as the embedded model: the same greedy tokens as it gives
    same = requests.post(
        pulled_server.run_url(LLAMA2), json=body, headers=pulled_server.auth, timeout=120
    )
    assert same.headers["x-wai-model"] != "smollm2.Q4_1"
    assert r.json()["result"]["response"] == same.json()["result"]["response"]
    search = requests.get(
        f"{pulled_server.url}/client/v4/accounts/acc/ai/models/search?search=tinyllama",
        headers=pulled_server.auth,
        timeout=10,
    ).json()["result"]
    props = {p["property_id"]: p["value"] for p in search[0]["properties"]}
    assert props["wai_weights"] == "own" and "wai_pull" not in props
    models = requests.get(
        f"{pulled_server.url}/v1/models", headers=pulled_server.auth, timeout=10
    ).json()
    assert TINY in [m["id"] for m in models["data"]]


def test_the_check_script_fills_in_sizes_and_hashes(
    hub: tuple[HubFixture, Path], tmp_path: Path
) -> None:
    table = tmp_path / "table.json"
    entry = {"license": "x", "quant": "Q4_1", "why": "test", "revision": "main"}
    table.write_text(json.dumps({"sources": {
        TINY: {**entry, "repo": REPO, "file": FILE},
        BAD: {**entry, "repo": REPO, "file": "missing.gguf"},
    }}))  # fmt: skip
    out = subprocess.run(
        [sys.executable, "scripts/check_hub_sources.py", "--table", str(table), "--pin"],
        cwd=ROOT, env=_env(hub, tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1 and "missing.gguf" in out.stdout and "1 of 2" in out.stdout
    checked = json.loads(table.read_text())["sources"][TINY]
    gguf = embedded_model_path()
    assert checked["checked"] and checked["size"] == gguf.stat().st_size
    assert checked["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert checked["revision"] == "0123456789abcdef0123456789abcdef01234567"


def test_auto_pull_answers_503_with_progress_then_serves(
    hub: tuple[HubFixture, Path], tmp_path: Path
) -> None:
    fixture, _ = hub
    env = _env(hub, tmp_path / "hub", WAI_USAGE_DB=str(tmp_path / "usage.db"), WAI_AUTO_PULL="true")
    srv = start_server(
        tmp_path,
        "--token",
        TOKEN,
        env={k: v for k, v in env.items() if k.startswith(("HF_", "WAI_"))},
    )
    try:
        fixture.slow, gets = True, len(fixture.ranges)
        body = {
            "prompt": "The capital of France is",
            "raw": True,
            "max_tokens": 4,
            "temperature": 0,
        }
        first = requests.post(srv.run_url(TINY), json=body, headers=srv.auth, timeout=30)
        assert first.status_code == 503 and first.headers["retry-after"] == "5"
        (error,) = first.json()["errors"]
        assert error["code"] == 3043 and "downloading" in error["message"]
        deadline = time.monotonic() + 120
        while True:
            r = requests.post(srv.run_url(TINY), json=body, headers=srv.auth, timeout=60)
            if r.status_code == 200:
                break
            message = r.json()["errors"][0]["message"]
            assert r.status_code == 503 and ("% of 93.8 MiB" in message or "so far" in message)
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert r.headers["x-wai-model"] == "smollm2.Q4_1"
        assert len(fixture.ranges) == gets + 1  # every request shared the one download
        # an id without a curated source is not held up
        unmapped = "@cf/qwen/qwen1.5-0.5b-chat"  # no curated file: the stand-in answers at once
        other = requests.post(srv.run_url(unmapped), json=body, headers=srv.auth, timeout=60)
        assert other.status_code == 200
    finally:
        fixture.slow = False
        stop_server(srv)


def test_a_speech_model_is_pulled_whole_and_listed_only_when_whole(
    hub: tuple[HubFixture, Path], tmp_path: Path
) -> None:
    out = _pull(_env(hub, tmp_path), ASR)
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.split("ok: ", 1)[1].split("\n")[0])
    assert folder.is_dir() and {p.name for p in folder.iterdir()} == {
        "model.bin", "config.json", "tokenizer.json", "vocabulary.txt"
    }  # fmt: skip
    assert f"answered by {ASR_NAME}" in out.stdout
    listed = _pull(_env(hub, tmp_path), "--list").stdout
    (row,) = [line for line in listed.splitlines() if line.startswith(ASR)]
    assert "141.0 MiB" in row  # the folder: model.bin and its companions
    (folder / "tokenizer.json").unlink()  # a companion missing: not whole, not served
    listed = _pull(_env(hub, tmp_path), "--list").stdout
    (row,) = [line for line in listed.splitlines() if line.startswith(ASR)]
    assert "MiB" not in row


def test_pulled_speech_models_answer_their_ids_and_only_theirs(
    pulled_server: Server, tmp_path: Path
) -> None:
    said = SENTENCES[0]
    audio = speak(said, tmp_path / "said.wav")
    r = requests.post(
        pulled_server.run_url(ASR), data=audio, headers=pulled_server.auth, timeout=120
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-wai-model"] == ASR_NAME
    assert recovered(said, r.json()["result"]["text"]) >= 0.75
    other = requests.post(
        pulled_server.run_url("@cf/openai/whisper"),
        data=audio,
        headers=pulled_server.auth,
        timeout=120,
    )
    assert other.headers["x-wai-model"] == "whisper-base"  # still the embedded stand-in
    spoken = requests.post(
        pulled_server.run_url(VOICE),
        json={"text": "Hello there."},
        headers=pulled_server.auth,
        timeout=120,
    )
    assert spoken.status_code == 200 and spoken.headers["content-type"] == "audio/mpeg"
    # its own voice, though still one Piper voice for all of Deepgram's speakers
    assert spoken.headers["x-wai-model"].startswith("en_US-test-medium")
    assert spoken.content[:3] == b"ID3" or spoken.content[0] == 0xFF


def test_a_text_classifier_is_pulled_converted_and_serves_its_id(tmp_path: Path) -> None:
    """A Hugging Face DistilBERT folder (tiny, random) as the Hub serves one: its config.json
    kept in git (checked by its git blob id, as the table states no SHA-256 for it), the rest
    LFS. Pulled, it answers distilbert-sst-2-int8 itself; a tampered config is refused."""
    from tests.text2text_models import write_distilbert

    folder = write_distilbert(tmp_path / "model")
    repo = "wai-test/distilbert-sst2"
    files = {f"{repo}/{p.name}": p for p in folder.iterdir()}
    fixture = HubFixture(files=files, git={f"{repo}/config.json"})
    server = serve(fixture)

    def part(name: str, sha: bool = True) -> dict[str, object]:
        data = (folder / name).read_bytes()
        return {"file": name, "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest() if sha else None}  # fmt: skip

    model = "@cf/huggingface/distilbert-sst-2-int8"
    entry = {"repo": repo, **part("model.safetensors"), "license": "apache-2.0", "quant": "F32",
             "why": "the test's classifier", "folder": True, "served_as": "sst2-test",
             "companions": [part("vocab.txt"), part("config.json", sha=False)]}  # fmt: skip
    (tmp_path / "sources.json").write_text(json.dumps({"sources": {model: entry}}))
    cache = tmp_path / "hf"
    env = _env((fixture, tmp_path), cache)
    try:
        out = _pull(env, model)
        assert out.returncode == 0, out.stderr
        srv = start_server(
            tmp_path, "--token", TOKEN, env={**env, "WAI_CACHE_DIR": str(tmp_path / "c")}
        )
        try:
            r = requests.post(
                srv.run_url(model), headers=srv.auth, json={"text": "Good"}, timeout=60
            )
            assert r.status_code == 200, r.text
            assert r.headers["x-wai-model"] == "sst2-test"
            assert {o["label"] for o in r.json()["result"]} == {"POSITIVE", "NEGATIVE"}
        finally:
            stop_server(srv)
        fixture.announce[f"{repo}/config.json"] = "0" * 40  # bytes that are not what was announced
        out = _pull(_env((fixture, tmp_path), tmp_path / "hf2"), model)
        assert out.returncode == 1 and "git blob id" in out.stderr, out.stderr
    finally:
        server.shutdown()
        server.server_close()
