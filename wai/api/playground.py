"""The playground: a page at `/` (and `/playground`) to chat with any text-generation model id
and see the same request as curl, Python and Worker code, to embed a few texts and see their
similarity as a heat map, to hear text spoken and read audio's transcript with word timings,
and to translate, summarize and classify text.

Seven files shipped in the package (`static/`), served by wai itself: the page works offline.
A strict Content-Security-Policy allows only wai's own script, styles and API (no inline
script, no other origin). The page and its assets need no token; the API calls the page makes
do, and it asks for one (kept in sessionStorage only).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import Response

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; media-src 'self' blob:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# path -> (file, Content-Type); set whole, so Starlette adds no charset of its own
FILES = {
    "/": ("playground.html", "text/html; charset=utf-8"),
    "/playground": ("playground.html", "text/html; charset=utf-8"),
    "/playground/playground.js": ("playground.js", "text/javascript; charset=utf-8"),
    "/playground/playground.css": ("playground.css", "text/css; charset=utf-8"),
    "/playground/embeddings.js": ("embeddings.js", "text/javascript; charset=utf-8"),
    "/playground/speech.js": ("speech.js", "text/javascript; charset=utf-8"),
    "/playground/text.js": ("text.js", "text/javascript; charset=utf-8"),
    "/playground/icon.svg": ("icon.svg", "image/svg+xml"),
    # browsers ask for it whatever the page links: answered, not a 400 in the console
    "/favicon.ico": ("icon.svg", "image/svg+xml"),
}
PATHS = frozenset(FILES)
_CONTENT = {name: (STATIC / name).read_bytes() for name, _ in FILES.values()}

router = APIRouter()


def _serve(path: str) -> Response:
    name, content_type = FILES[path]
    return Response(
        _CONTENT[name],
        headers={
            "content-type": content_type,
            "content-security-policy": CSP,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "cache-control": "no-cache",
        },
    )


def _route(path: str) -> None:
    async def serve() -> Response:
        return _serve(path)

    router.add_api_route(path, serve, methods=["GET", "HEAD"], include_in_schema=False)


for _path in FILES:
    _route(_path)
