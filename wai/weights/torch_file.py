"""PyTorch's `torch.save` files (`pytorch_model.bin`) read into numpy without torch, and without
running the pickle's code: some Hugging Face models (M2M100 1.2B) publish their weights only so.

The file is a zip: `<name>/data.pkl` (a pickle of the state dict) and `<name>/data/<key>` (each
storage's raw bytes, little-endian). The pickle is read by an unpickler that resolves only the
names a state dict uses (the tensor rebuild functions, storage types, OrderedDict) and refuses
any other: a file that asks for anything else is not a state dict, and is refused before it can
run a thing. Tensors come back as numpy arrays viewed on the storages' bytes (strides honoured).
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

# torch storage types -> numpy dtypes (bfloat16 is widened to float32 below)
_STORAGES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "DoubleStorage": np.dtype("<f8"),
    "BFloat16Storage": np.dtype("<u2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class TorchFileError(ValueError):
    """Not a PyTorch state dict this reader takes (or one that asks to run code)."""


class _Storage:
    def __init__(self, dtype: np.dtype[Any], data: bytes, bf16: bool = False) -> None:
        self.dtype = dtype
        self.data = data
        self.bf16 = bf16  # bfloat16, read as its 16 bits and widened to float32


def _rebuild_tensor(
    storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> np.ndarray:
    item = storage.dtype.itemsize
    flat = np.frombuffer(storage.data, dtype=storage.dtype)
    if not size:
        return flat[offset : offset + 1].reshape(())
    array = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=[s * item for s in stride], writeable=False
    )
    if storage.bf16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    return np.ascontiguousarray(array)


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    return data


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(file)
        self.archive = archive
        self.prefix = prefix

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise TorchFileError(f"the file asks for {module}.{name}: not a plain state dict")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchFileError(f"unexpected persistent id {pid!r}")
        storage_type, key = pid[1], pid[2]
        if not isinstance(storage_type, _StorageType):
            raise TorchFileError("a storage of an unknown type")
        data = self.archive.read(f"{self.prefix}data/{key}")
        name = storage_type.name
        return _Storage(_STORAGES[name], data, bf16=name == "BFloat16Storage")


def load(path: Path) -> dict[str, np.ndarray]:
    """The state dict of a `torch.save` zip file, as numpy arrays. Raises TorchFileError."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise TorchFileError(
            f"{path.name}: not a zip-format PyTorch file (torch.save before 1.6 is not read)"
        ) from e
    with archive:
        pkl = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
        if pkl is None:
            raise TorchFileError(f"{path.name}: no data.pkl in the archive")
        prefix = pkl[: -len("data.pkl")]
        with archive.open(pkl) as f:
            state = _Unpickler(f, archive, prefix).load()
    if not isinstance(state, dict):
        raise TorchFileError(f"{path.name}: the pickle is not a state dict")
    return {str(k): v for k, v in state.items() if isinstance(v, np.ndarray)}
