"""Errors that the layers below the web layer raise about a request. The web layer turns each
into its wire form (a Cloudflare envelope, later an OpenAI error or a binding error)."""

from __future__ import annotations


class RequestError(Exception):
    """Something wrong with what the client asked for."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(RequestError):
    """The input does not match the model's schema or limits (Workers AI code 5006)."""


class UnknownModel(RequestError):
    """No such model (Workers AI code 5007)."""

    def __init__(self, model: str) -> None:
        super().__init__(f"No such model {model} or task")
        self.model = model


class ModelUnavailable(RequestError):
    """The id is known, but the local model behind it could not be loaded."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"{model} is not available on this server: {reason}")
        self.model = model
