"""A small local server that speaks the Hugging Face Hub's download protocol, for `wai pull`'s
tests (these machines cannot reach the Hub): `HEAD`/`GET /{org}/{repo}/resolve/{revision}/
{file}` answering `X-Repo-Commit`, `ETag`/`X-Linked-Etag` (the LFS SHA-256; for a file kept in
git, `ETag` alone: its git blob id), `X-Linked-Size`
and `Content-Length`, byte ranges for a resumed download, a gated repository's 401 with the
Hub's `X-Error-Code: GatedRepo`, and a slow mode that sends a file a little at a time (so a
test can interrupt it)."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFixture:
    files: dict[str, Path] = field(default_factory=dict)  # "org/repo/file" -> bytes on disk
    gated: dict[str, str] = field(default_factory=dict)  # "org/repo" -> the token with access
    announce: dict[str, str] = field(default_factory=dict)  # a wrong SHA-256 (git id) to announce
    sizes: dict[str, int] = field(default_factory=dict)  # a size to announce instead
    git: set[str] = field(default_factory=set)  # files kept in git, not LFS: ETag = blob id
    slow: bool = False  # send 1 MiB every 50 ms
    ranges: list[int] = field(default_factory=list)  # the start of every GET (0: no Range)
    url: str = ""

    def sha256(self, key: str) -> str:
        return self.announce.get(key) or hashlib.sha256(self.files[key].read_bytes()).hexdigest()


def serve(fixture: HubFixture) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            parts = self.path.split("?")[0].lstrip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                self.send_error(404)
                return
            repo, key = f"{parts[0]}/{parts[1]}", "/".join([parts[0], parts[1], *parts[4:]])
            if repo in fixture.gated and self.headers.get("authorization") != (
                f"Bearer {fixture.gated[repo]}"
            ):
                self.send_response(401)
                self.send_header("X-Error-Code", "GatedRepo")
                self.send_header("X-Error-Message", "Access to this repo is restricted")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path = fixture.files.get(key)
            if path is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._file(key, path, body)

        def _file(self, key: str, path: Path, body: bool) -> None:
            size = fixture.sizes.get(key, path.stat().st_size)
            start = 0
            spec = self.headers.get("range", "")
            if spec.startswith("bytes="):
                start = int(spec[6:].split("-")[0])
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            if key in fixture.git:  # as the Hub answers for a file in git: its blob id
                data = path.read_bytes()
                blob = (
                    fixture.announce.get(key)
                    or hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                )
                self.send_header("ETag", f'"{blob}"')
            else:
                sha = fixture.sha256(key)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(size - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            if not body:
                return
            fixture.ranges.append(start)
            with path.open("rb") as f:
                f.seek(start)
                while chunk := f.read(1 << 20):
                    try:
                        self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    if fixture.slow:
                        time.sleep(0.05)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fixture.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
