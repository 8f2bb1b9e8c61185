"""wai: a self-hosted, Workers AI-compatible LLM inference server."""

__version__ = "0.1.0"
