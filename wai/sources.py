"""Where a configured model path points: a local file, or `hf:ORG/REPO/FILE.gguf` in the local
Hugging Face cache. Resolved offline, at start: only `wai pull` (wai/hub.py) downloads.

The cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`, in the
layout huggingface_hub writes: `models--ORG--REPO/refs/main` names the snapshot, and
`snapshots/<commit>/FILE.gguf` links into `blobs/`.

With `model_roots` set, a local path must stay inside one of them: no `..` segment, and its real
path (symlinks followed) inside a root. Files from the Hugging Face cache are allowed as such.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

HF_PREFIX = "hf:"


class ModelSourceError(ValueError):
    """The path cannot be used: not in the cache, or outside the model roots."""


def hf_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def resolve_hf(spec: str, cache: Path) -> Path:
    """`hf:ORG/REPO/FILE` (FILE may have folders) -> the file in the cached snapshot."""
    parts = spec[len(HF_PREFIX) :].split("/")
    if len(parts) < 3 or not all(parts) or ".." in parts:
        raise ModelSourceError(f"{spec}: expected hf:ORG/REPO/FILE.gguf")
    org, repo, rel = parts[0], parts[1], "/".join(parts[2:])
    repo_dir = cache / f"models--{org}--{repo}"
    snapshots = repo_dir / "snapshots"
    candidates: list[Path] = []
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        candidates.append(snapshots / ref.read_text().strip() / rel)
    if snapshots.is_dir():  # any other snapshot holding the file, newest first
        others = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        candidates += [snap / rel for snap in others]
    for path in candidates:
        if path.is_file():
            return path
    raise ModelSourceError(
        f"{spec} is not in the Hugging Face cache ({cache}): fetch it first with `wai pull {spec}`"
    )


def resolve(path: Path, roots: Sequence[Path], env: Mapping[str, str] | None = None) -> Path:
    """The file a configured model path names. Raises ModelSourceError."""
    raw = str(path)
    if raw.startswith(HF_PREFIX):
        return resolve_hf(raw, hf_cache_dir(env))
    if not roots:
        return path
    if ".." in path.parts:
        raise ModelSourceError(f"{path}: '..' is not allowed in a model path")
    real = path.resolve()
    for root in roots:
        if real.is_relative_to(root.resolve()):
            return path
    raise ModelSourceError(
        f"{path} is outside model_roots ({', '.join(str(r) for r in roots)})"
        + (f"; it resolves to {real}" if real != path.absolute() else "")
    )
