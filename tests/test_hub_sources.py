"""The curated table of GGUF sources (wai/data/hub_sources.json): its shape, and that every id
of a task wai serves has a source or a stated reason for having none."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from wai import hub
from wai.catalog import Catalog


def test_every_served_id_has_a_source_or_a_reason() -> None:
    table = hub.load_sources()
    served = {s.id for s in Catalog().specs if s.kind is not None}
    assert served <= set(table.files) | set(table.unmapped)
    assert not set(table.files) & set(table.unmapped)
    assert all(why.strip() for why in table.unmapped.values())
    assert not (set(table.files) | set(table.unmapped)) - served  # no stale ids


def test_every_source_names_a_gguf_its_license_and_why() -> None:
    for model_id, f in hub.load_sources().files.items():
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", f.repo), model_id
        assert ".." not in f.file and not f.file.startswith("/"), model_id
        assert f.license and f.quant and f.why, model_id
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256), model_id
        if f.companions or f.folder:  # a speech model: checked just below
            continue
        assert f.file.endswith(".gguf"), model_id
        # the quantization chosen matches the id's own (int8 -> Q8_0, awq -> a 4-bit K-quant)
        if model_id.endswith("-int8"):
            assert f.quant == "Q8_0", model_id
        if model_id.endswith("-awq"):
            assert f.quant.startswith("Q4_K"), model_id


def test_speech_sources_name_every_file_of_the_model_hash_checked() -> None:
    """A Whisper id: a CTranslate2 folder (model.bin, its config, tokenizer and vocabulary),
    served as the folder under its own name; a voice id: a Piper ONNX file and its JSON config
    beside it. Every file's SHA-256 is stated, so that no byte is served unchecked."""
    table = hub.load_sources().files
    specs = {s.id: s for s in Catalog().specs}
    for model_id in (
        "@cf/openai/whisper",
        "@cf/openai/whisper-tiny-en",
        "@cf/openai/whisper-large-v3-turbo",
    ):
        f = table[model_id]
        names = {c.file for c in f.companions}
        assert f.file == "model.bin" and f.folder and f.served_as.startswith("faster-whisper-")
        assert {"config.json", "tokenizer.json"} <= names
        assert names & {"vocabulary.txt", "vocabulary.json"}
        assert specs[model_id].kind == "automatic-speech-recognition"
    assert "preprocessor_config.json" in {
        c.file for c in table["@cf/openai/whisper-large-v3-turbo"].companions
    }
    for model_id in (
        "@cf/deepgram/aura-1",
        "@cf/deepgram/aura-2-en",
        "@cf/deepgram/aura-2-es",
        "@cf/myshell-ai/melotts",
    ):
        f = table[model_id]
        assert f.file.endswith(".onnx") and not f.folder, model_id
        assert [c.file for c in f.companions] == [f.file + ".json"], model_id
        assert specs[model_id].kind == "text-to-speech"
    assert "es_ES" in table["@cf/deepgram/aura-2-es"].file
    for model_id, f in table.items():
        if f.companions or f.folder:
            assert f.sha256 and f.size, model_id
            # a companion without a published SHA-256 is a small file the Hub keeps in git,
            # checked by its git blob id (M2M100's config.json)
            assert all(c.size for c in f.companions), model_id
            unhashed = [c for c in f.companions if not c.sha256]
            assert all(c.file.endswith(".json") and (c.size or 0) < 4096 for c in unhashed)
            assert len(f.parts()) == len(f.companions) + 1 and f.parts()[-1].file == f.file


def test_a_teams_own_sources_override_the_packaged_ones(tmp_path: Path) -> None:
    own = tmp_path / "sources.json"
    own.write_text(
        '{"sources": {"@cf/google/gemma-7b-it-lora": {"repo": "me/x", "file": "x.gguf"}}}'
    )
    table = hub.load_sources(own)
    assert table.files["@cf/google/gemma-7b-it-lora"].spec == "hf:me/x/x.gguf"
    assert "@cf/google/gemma-7b-it-lora" not in table.unmapped


def test_hf_file_specs() -> None:
    f = hub.parse_file("hf:org/repo/sub/file.gguf")
    assert (f.repo, f.file, f.name) == ("org/repo", "sub/file.gguf", "file")
    for bad in ("org/repo/file.gguf", "hf:org/file.gguf", "hf:org/../x.gguf"):
        with pytest.raises(hub.PullError):
            hub.parse_file(bad)


def test_text_to_text_sources_are_hugging_face_folders_of_their_task() -> None:
    table = hub.load_sources().files
    wanted = {
        "@cf/meta/m2m100-1.2b": ("pytorch_model.bin", {"sentencepiece.bpe.model", "vocab.json"}),
        "@cf/facebook/bart-large-cnn": ("model.safetensors", {"tokenizer.json"}),
        "@cf/huggingface/distilbert-sst-2-int8": ("model.safetensors", {"vocab.txt"}),
    }
    for model_id, (main, tokenizer) in wanted.items():
        f = table[model_id]
        names = {c.file for c in f.companions}
        assert f.file == main and f.folder and f.served_as, model_id
        assert {"config.json", *tokenizer} <= names, model_id
        assert f.revision and len(f.revision) == 40, model_id
    assert "@cf/ai4bharat/indictrans2-en-indic-1B" in hub.load_sources().unmapped


def test_a_git_blob_id_is_gits_own(tmp_path: Path) -> None:
    import subprocess

    f = tmp_path / "config.json"
    f.write_text('{"a": 1}\n')
    want = subprocess.run(["git", "hash-object", str(f)], capture_output=True, text=True).stdout
    assert hub.git_blob_id(f) == want.strip()
    assert hub.announced_git_blob(f'"{want.strip()}"') == f"git:{want.strip()}"
    assert hub.announced_git_blob('"' + "a" * 64 + '"') is None  # an LFS SHA-256, not a blob id
