"""`torch.save`'s zip format written without torch, for the reader's tests: a state dict of
numpy arrays pickled as PyTorch pickles one (`torch._utils._rebuild_tensor_v2` over storages
named by persistent ids, each storage's bytes in `archive/data/<key>`)."""

from __future__ import annotations

import collections
import io
import pickle
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

_NAMES = {np.dtype("<f4"): "FloatStorage", np.dtype("<f2"): "HalfStorage",
          np.dtype("<i8"): "LongStorage"}  # fmt: skip


def _fake_torch() -> dict[str, types.ModuleType]:
    """Stand-in modules, so that pickle can name torch's globals without torch."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: Any) -> None: ...

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    for name in _NAMES.values():
        cls = type(name, (), {"__module__": "torch", "__qualname__": name})
        setattr(torch, name, cls)
    torch._utils = utils  # type: ignore[attr-defined]
    return {"torch": torch, "torch._utils": utils}


class _Tensor:
    def __init__(self, key: str, array: np.ndarray, modules: dict[str, types.ModuleType]) -> None:
        self.key, self.array, self.modules = key, array, modules

    def __reduce__(self) -> tuple[Any, ...]:
        a = self.array
        storage = ("storage", getattr(self.modules["torch"], _NAMES[a.dtype]), self.key, "cpu",
                   a.size)  # fmt: skip
        strides = tuple(s // a.itemsize for s in a.strides)
        rebuild = self.modules["torch._utils"]._rebuild_tensor_v2  # type: ignore[attr-defined]
        return (
            rebuild,
            (_Persistent(storage), 0, a.shape, strides, False, collections.OrderedDict()),
        )


class _Persistent:
    def __init__(self, pid: tuple[Any, ...]) -> None:
        self.pid = pid


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return obj.pid if isinstance(obj, _Persistent) else None


def save(state: dict[str, np.ndarray], path: Path, extra: Any = None) -> None:
    """Write `state` as `torch.save` would (arrays made contiguous, little-endian)."""
    modules = _fake_torch()
    saved = {k: sys.modules.get(k) for k in modules}
    sys.modules.update(modules)
    try:
        arrays = {k: np.require(v, requirements="C") for k, v in state.items()}
        body = collections.OrderedDict(
            (k, _Tensor(str(i), a, modules)) for i, (k, a) in enumerate(arrays.items())
        )
        if extra is not None:
            body["extra"] = extra  # type: ignore[assignment]
        buf = io.BytesIO()
        _Pickler(buf, protocol=2).dump(body)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/version", "3\n")
        for i, a in enumerate(arrays.values()):
            z.writestr(f"archive/data/{i}", a.tobytes())
