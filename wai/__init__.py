"""wai: a self-hosted, Workers AI-compatible LLM inference server.

The Python client (`Ai`, `AsyncAi`, `LocalAi`, `AiError`) is imported on first use, so that
engine processes and probe children, which import `wai.engines`, never load httpx with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Ai", "AiError", "AsyncAi", "LocalAi", "__version__"]

if TYPE_CHECKING:
    from wai.client import Ai, AiError, AsyncAi, LocalAi


def __getattr__(name: str) -> Any:
    if name in ("Ai", "AiError", "AsyncAi", "LocalAi"):
        from wai import client

        return getattr(client, name)
    raise AttributeError(f"module 'wai' has no attribute {name!r}")
