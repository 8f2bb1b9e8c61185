"""Real weights for Workers AI ids: the curated GGUF source of each id (package data, plus a
team's own file, `hub_sources`), and `wai pull`, which downloads one into the Hugging Face
cache through `huggingface_hub`.

A pull:
- asks the Hub for the file's metadata first (size, commit, and the LFS SHA-256 it announces),
  and refuses before downloading when the disk cannot hold what is left to fetch;
- downloads with `hf_hub_download` (resumes a `.incomplete` file, `HF_TOKEN` for gated repos,
  `HF_ENDPOINT` for a mirror), with a progress bar on a terminal and a line every 10 %
  otherwise;
- checks the bytes against the SHA-256 (the table's, else the Hub's) before the file is used,
  and removes them from the cache when they differ.

A pulled file is served by its id (models.py) with no configuration; wai downloads nothing
unless asked (`wai pull`).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import shutil
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from wai import sources

_SHA256 = re.compile(r"[0-9a-f]{64}")
MARGIN = 64 << 20  # bytes kept free beyond the file (the cache's links, the log, the rest)


class PullError(Exception):
    """A pull that cannot be done or did not give the right bytes: the message says why."""


@dataclass(frozen=True, slots=True)
class Companion:
    """A file pulled beside a model's main file, from the same repository and revision: the
    rest of a CTranslate2 model folder, a Piper voice's JSON config."""

    file: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class HubFile:
    """One model on the Hub (a GGUF file; or a main file and its companions), and why it was
    chosen for an id."""

    repo: str
    file: str
    revision: str = "main"
    license: str = ""
    gated: bool = False
    quant: str = ""
    why: str = ""
    size: int | None = None
    sha256: str | None = None
    checked: bool = False
    companions: tuple[Companion, ...] = ()
    folder: bool = False  # the model is the folder of its files (CTranslate2), not `file`
    served_as: str = ""  # the model name, when the file's own name says nothing (model.bin)

    @property
    def spec(self) -> str:
        """The `hf:ORG/REPO/FILE` form a config's `path` takes."""
        return f"hf:{self.repo}/{self.file}"

    @property
    def name(self) -> str:
        """The model name a pulled file is served under: its file name without `.gguf` (or a
        voice's `.onnx`), unless the source names it."""
        return self.served_as or Path(self.file).name.removesuffix(".gguf").removesuffix(".onnx")

    def parts(self) -> list[HubFile]:
        """What a pull fetches, one file each: the companions, then the main file (so that the
        main file in the cache means the model is whole)."""
        files = [*((c.file, c.size, c.sha256) for c in self.companions)]
        files.append((self.file, self.size, self.sha256))
        return [
            HubFile(self.repo, file, self.revision, size=size, sha256=sha256)
            for file, size, sha256 in files
        ]

    def served(self, main: Path) -> Path:
        """What a model config's `path` takes, given where the main file is."""
        return main.parent if self.folder else main


@dataclass(frozen=True, slots=True)
class Sources:
    """The curated table: each id's file, and the served ids without one (and why)."""

    files: dict[str, HubFile]
    unmapped: dict[str, str]


def load_sources(extra: Path | None = None) -> Sources:
    """The packaged table, with a team's own entries (`hub_sources`, same format) over it."""
    text = resources.files("wai.data").joinpath("hub_sources.json").read_text()
    doc = json.loads(text)
    files = {mid: _entry(e) for mid, e in doc["sources"].items()}
    unmapped: dict[str, str] = dict(doc.get("unmapped", {}))
    if extra is not None:
        own = json.loads(extra.read_text())
        for mid, e in own.get("sources", {}).items():
            files[mid] = _entry(e)
            unmapped.pop(mid, None)
    return Sources(files, unmapped)


def _entry(e: Mapping[str, Any]) -> HubFile:
    fields = set(HubFile.__dataclass_fields__)
    values = {k: v for k, v in e.items() if k in fields}
    values["companions"] = tuple(Companion(**c) for c in e.get("companions", ()))
    return HubFile(**values)


def parse_file(spec: str) -> HubFile:
    """`hf:ORG/REPO/FILE.gguf` as a HubFile (no curated facts)."""
    parts = spec.removeprefix(sources.HF_PREFIX).split("/")
    if not spec.startswith(sources.HF_PREFIX) or len(parts) < 3 or not all(parts) or ".." in parts:
        raise PullError(f"{spec}: expected a model id or hf:ORG/REPO/FILE.gguf")
    return HubFile(f"{parts[0]}/{parts[1]}", "/".join(parts[2:]))


def cached(hub_file: HubFile, cache: Path | None = None) -> Path | None:
    """The model in the Hugging Face cache (its file, or its folder), if it is there whole:
    the main file, and its companions in the same snapshot."""
    try:
        main = sources.resolve_hf(hub_file.spec, cache or sources.hf_cache_dir())
    except sources.ModelSourceError:
        return None
    snapshot = main.parents[len(Path(hub_file.file).parts) - 1]
    if not all((snapshot / c.file).is_file() for c in hub_file.companions):
        return None
    return hub_file.served(main)


def disk_size(path: Path) -> int:
    """The bytes of a pulled model: its file, or its folder's files."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return path.stat().st_size


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    _hash_into(digest, path)
    return digest.hexdigest()


def _hash_into(digest: Any, path: Path) -> None:
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)


def pull(
    hub_file: HubFile,
    cache: Path | None = None,
    token: str | None = None,
    say: Callable[[str], None] = print,
    on_bytes: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download a model's files into the cache and check their bytes; the model's path (its
    file, or its folder). Raises PullError. `on_bytes(done, total)` follows each download (a
    server's auto_pull)."""
    main = Path()
    for part in hub_file.parts():
        main = _pull_file(part, cache, token, say, on_bytes)
    return hub_file.served(main)


def _pull_file(
    hub_file: HubFile,
    cache: Path | None,
    token: str | None,
    say: Callable[[str], None],
    on_bytes: Callable[[int, int | None], None] | None,
) -> Path:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    cache = cache or sources.hf_cache_dir()
    token = token or os.environ.get("HF_TOKEN") or None
    url = hf_hub_url(hub_file.repo, hub_file.file, revision=hub_file.revision)
    try:
        meta = get_hf_file_metadata(url, token=token)
        if meta.etag is None or meta.commit_hash is None:
            raise PullError(f"{url}: the server did not say which version this is (no ETag)")
        expected = hub_file.sha256 or announced_sha256(meta.etag) or announced_git_blob(meta.etag)
        layout = _Layout(cache, hub_file, meta.commit_hash, meta.etag.strip('"'))
        _check_room(cache, meta.size, layout.partial)
        say(f"pulling {hub_file.repo}/{hub_file.file} ({size_text(meta.size)}) into {cache}")
        if on_bytes is not None:
            on_bytes(0, meta.size)
        path = _download(layout, meta.location, meta.size, token, say, on_bytes, expected)
    except GatedRepoError as e:
        raise PullError(_gated(hub_file, token)) from e
    except RepositoryNotFoundError as e:
        raise PullError(f"{hub_file.repo}: no such repository (or it is private)") from e
    except HfHubHTTPError as e:
        raise PullError(f"{hub_file.repo}/{hub_file.file}: {e}") from e
    return path


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where huggingface_hub's cache keeps a file: `blobs/<etag>`, linked from
    `snapshots/<commit>/<file>`, with `refs/<revision>` naming the commit."""

    cache: Path
    hub_file: HubFile
    commit: str
    etag: str

    @property
    def folder(self) -> Path:
        return self.cache / f"models--{self.hub_file.repo.replace('/', '--')}"

    @property
    def blob(self) -> Path:
        return self.folder / "blobs" / self.etag

    @property
    def partial(self) -> Path:
        return self.blob.with_name(f"{self.etag}.incomplete")

    @property
    def link(self) -> Path:
        return self.folder / "snapshots" / self.commit / self.hub_file.file


class _Hashing:
    """The file a download writes to, hashing the bytes as they pass, on a thread of its own
    (hashlib releases the GIL: the download does not wait for the hash, and no second read of
    a large file follows). A seek or truncate (http_get starting over) voids the hash."""

    def __init__(self, f: Any, digest: Any) -> None:
        self.f, self.digest, self.valid = f, digest, True
        # bounded: on a CPU slower than the network the download waits for the hash, rather
        # than holding the file in memory (http_get's chunks are up to 10 MB)
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._hash, daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self.digest.update(chunk)

    def hexdigest(self) -> str | None:
        """The bytes' SHA-256 (None when voided); call once, after the last write."""
        self._chunks.put(None)
        self._thread.join()
        return self.digest.hexdigest() if self.valid else None

    def write(self, data: bytes) -> int:
        self._chunks.put(bytes(data))
        written: int = self.f.write(data)
        return written

    def tell(self) -> int:
        at: int = self.f.tell()
        return at

    def seek(self, *args: Any) -> int:
        self.valid = False
        at: int = self.f.seek(*args)
        return at

    def truncate(self, *args: Any) -> int:
        self.valid = False
        size: int = self.f.truncate(*args)
        return size


def _download(
    layout: _Layout,
    url: str,
    size: int | None,
    token: str | None,
    say: Callable[[str], None],
    on_bytes: Callable[[int, int | None], None] | None = None,
    expected: str | None = None,
) -> Path:
    """The bytes into `<etag>.incomplete` (continuing one an interrupted pull left: the Hub
    answers ranges), checked against `expected`, then moved to the blob and linked from the
    snapshot: a file is in the cache's snapshot only once its bytes are right. One pull of a
    file at a time (a lock beside the blob). huggingface_hub's own hf_hub_download starts over
    in every process (a process-unique temporary file), so a killed pull would lose its
    bytes."""
    from filelock import FileLock
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils._headers import build_hf_headers

    layout.blob.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(layout.blob) + ".lock"):
        if not layout.blob.is_file():
            have = layout.partial.stat().st_size if layout.partial.is_file() else 0
            sha = hashlib.sha256()
            if have:
                say(f"  resuming after {size_text(have)}")
                _hash_into(sha, layout.partial)
            with layout.partial.open("ab") as f:
                hashing = _Hashing(f, sha)
                http_get(
                    url,
                    hashing,  # type: ignore[arg-type]
                    resume_size=have,
                    headers=build_hf_headers(token=token),
                    expected_size=size,
                    displayed_filename=layout.hub_file.file,
                    tqdm_class=(
                        None
                        if sys.stderr.isatty() and on_bytes is None
                        else _tenths(say, have, on_bytes)
                    ),
                )
            _verify(layout.partial, expected, hashing.hexdigest())
            os.replace(layout.partial, layout.blob)
        else:
            _verify(layout.blob, expected)  # a blob from before: its bytes checked too
        layout.link.parent.mkdir(parents=True, exist_ok=True)
        layout.link.unlink(missing_ok=True)
        layout.link.symlink_to(os.path.relpath(layout.blob, layout.link.parent))
        refs = layout.folder / "refs" / layout.hub_file.revision
        refs.parent.mkdir(parents=True, exist_ok=True)
        refs.write_text(layout.commit)
    return layout.link


def announced_sha256(etag: str | None) -> str | None:
    """The SHA-256 the Hub announces for an LFS file (its ETag), if it is one."""
    value = (etag or "").strip('"').removeprefix("W/").strip('"').lower()
    return value if _SHA256.fullmatch(value) else None


def announced_git_blob(etag: str | None) -> str | None:
    """A file kept in git, not LFS (a small JSON): its ETag is git's blob id, a SHA-1 of the
    bytes; returned as `git:<id>` for `_verify`."""
    value = (etag or "").strip('"').removeprefix("W/").strip('"').lower()
    return f"git:{value}" if re.fullmatch(r"[0-9a-f]{40}", value) else None


def git_blob_id(path: Path) -> str:
    """git's id of a file's bytes (`git hash-object`)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _check_room(cache: Path, size: int | None, partial: Path) -> None:
    """Refuse before downloading when the disk cannot hold what is left to fetch."""
    if size is None:
        return
    cache.mkdir(parents=True, exist_ok=True)
    have = partial.stat().st_size if partial.is_file() else 0
    free = shutil.disk_usage(cache).free
    if size - have + MARGIN > free:
        raise PullError(
            f"{partial.parent.parent.name}: the file needs {size_text(size - have)} more, and "
            f"{cache} has {size_text(free)} free: make room, or point HF_HUB_CACHE at a larger disk"
        )


def _verify(path: Path, expected: str | None, digest: str | None = None) -> None:
    """The bytes against the SHA-256 (hashed while downloading, else read again); on a
    mismatch the file is removed, so nothing of it stays in the cache."""
    if expected is None:
        return
    # a file kept in git: its blob id, as the Hub announced it
    git = expected.startswith("git:")
    got = "git:" + git_blob_id(path) if git else digest or sha256_of(path)
    if got == expected.lower():
        return
    path.unlink(missing_ok=True)
    what = "git blob id" if got.startswith("git:") else "SHA-256"
    raise PullError(
        f"{what} {got} is not the expected {expected}; the download was removed from the cache"
    )


def _gated(hub_file: HubFile, token: str | None) -> str:
    from huggingface_hub import constants

    page = f"{constants.ENDPOINT}/{hub_file.repo}"
    if token is None:
        return (
            f"{hub_file.repo} is gated: accept its license at {page}, then set HF_TOKEN to a "
            "token of that account"
        )
    return f"{hub_file.repo} is gated and this token has no access: accept its license at {page}"


def size_text(n: int | None) -> str:
    if n is None:
        return "size unknown"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _tenths(
    say: Callable[[str], None],
    initial: int = 0,
    on_bytes: Callable[[int, int | None], None] | None = None,
) -> Any:
    """A tqdm class that prints a line every 10 % (no terminal to draw a bar on)."""
    from tqdm.auto import tqdm

    class Tenths(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True  # draws nothing itself
            super().__init__(*args, **kwargs)
            self._said = -1
            self._done = initial

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            total = self.total or 0
            if on_bytes is not None:
                on_bytes(self._done, int(total) or None)
            tenth = int(self._done * 10 / total) if total else 0
            if tenth > self._said:
                self._said = tenth
                say(f"  {tenth * 10}% ({size_text(self._done)} of {size_text(int(total))})")
            return None

    return Tenths
