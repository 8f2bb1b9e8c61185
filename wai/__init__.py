"""wai: a self-hosted, Workers AI-compatible LLM inference server."""

from wai.client import Ai, AiError, AsyncAi, LocalAi

__version__ = "0.1.0"
__all__ = ["Ai", "AiError", "AsyncAi", "LocalAi", "__version__"]
