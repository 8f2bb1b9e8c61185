"""`pytorch_model.bin` read without torch: a state dict comes back as numpy arrays, a pickle
that asks for anything but a state dict's names is refused before it runs, and a model
published only so (M2M100 1.2B) converts as its safetensors would."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.text2text_models import write_m2m100
from tests.torch_writer import save
from wai.weights import seq2seq
from wai.weights.torch_file import TorchFileError, load


def test_a_state_dict_reads_back_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    state = {
        "w": rng.standard_normal((3, 5)).astype(np.float32),
        "h": rng.standard_normal(7).astype(np.float16),
        "ids": np.arange(4, dtype=np.int64),
        "scalar": np.array(2.5, dtype=np.float32),
    }
    save(state, tmp_path / "m.bin")
    got = load(tmp_path / "m.bin")
    assert set(got) == set(state)
    for k, v in state.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k


def test_a_pickle_that_asks_to_run_code_is_refused(tmp_path: Path) -> None:
    save({"w": np.zeros(2, np.float32)}, tmp_path / "evil.bin", extra=os.system)
    with pytest.raises(TorchFileError, match=r"asks for .*system: not a plain state dict"):
        load(tmp_path / "evil.bin")


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old.bin").write_bytes(b"\x80\x02legacy torch.save")
    with pytest.raises(TorchFileError, match="not a zip-format PyTorch file"):
        load(tmp_path / "old.bin")


def test_m2m100_from_pytorch_model_bin_converts_as_from_safetensors(tmp_path: Path) -> None:
    src = write_m2m100(tmp_path / "st")
    binary = tmp_path / "bin"
    shutil.copytree(src, binary)
    (binary / "model.safetensors").unlink()
    save(load_file(src / "model.safetensors"), binary / "pytorch_model.bin")
    a = seq2seq.converted(src, tmp_path / "cache", "a")
    b = seq2seq.converted(binary, tmp_path / "cache", "b")
    assert (a / "model.bin").read_bytes() == (b / "model.bin").read_bytes()
    meta = json.loads((b / "wai.json").read_text())
    assert meta["task"] == "translation" and "fr" in meta["languages"]
