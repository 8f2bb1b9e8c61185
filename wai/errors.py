"""Errors that the layers below the web layer raise about a request, and the Workers AI codes
they are answered with. The web layer turns each into its wire form (a Cloudflare envelope, an
OpenAI error or a binding error); the Python client raises them as AiError."""

from __future__ import annotations

import re

# Workers AI / Cloudflare API codes (spec §1.4, §1.5).
BAD_INPUT = 5006
NO_SUCH_MODEL = 5007
REQUEST_TOO_LARGE = 3006
TIMEOUT = 3007
ABORTED = 3008
RATE_LIMITED = 3021
ACCOUNT_LIMITED = 3036  # the daily neuron allocation is spent
OUT_OF_CAPACITY = 3040
INTERNAL = 5000
MODEL_UNAVAILABLE = 3043  # wai's own: the model's weights could not be loaded, or it is stopping
MISSING_AUTH = 9106
INVALID_HEADERS = 6003
INVALID_AUTH_FORMAT = 6111
AUTH_ERROR = 10000
NO_ROUTE = 7000
NOT_FOUND = 7003  # Cloudflare's "perhaps your object identifier is invalid?" (404)
METHOD_NOT_ALLOWED = 7001


def bad_input_message(detail: object) -> str:
    """Workers AI's wording for a 5006, whatever found the problem."""
    return f"Bad input: Error: {detail}"


class RequestError(Exception):
    """Something wrong with what the client asked for."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(RequestError):
    """The input does not match the model's schema or limits (Workers AI code 5006)."""


class InputTooLarge(InvalidInput):
    """An input over its size limit (an audio file over `limits.max_audio_bytes`): Workers
    AI's 3006, as for a body too large."""


class UnknownModel(RequestError):
    """No such model (Workers AI code 5007)."""

    def __init__(self, model: str) -> None:
        super().__init__(f"No such model {model} or task")
        self.model = model


class UnservedTask(UnknownModel):
    """A Workers AI id of a task this server does not run (images, speech, ...): still 5007,
    the code Workers AI gives a model or task it cannot run, with a message that says which."""

    def __init__(self, model: str, task: str, served: str) -> None:
        article = "an" if task[:1].lower() in "aeiou" else "a"
        RequestError.__init__(
            self, f"{model} is {article} {task} model; this server runs {served}, not {task}"
        )
        self.model = model
        self.task = task


# an absolute path (POSIX, or Windows' C:\...) standing alone: after a space, a quote, a
# parenthesis or the start; a URL's "//host/path" follows a colon and is left as it is
_PATH = re.compile(r"""(?<![^\s'"(\[=])(?:/|[A-Za-z]:\\)[^\s'"()\[\]]*""")


def without_paths(message: str) -> str:
    """A message for clients and public endpoints: every absolute path in it cut to its last
    part (the file's name), so that the server's layout stays in its log."""

    def name(match: re.Match[str]) -> str:
        path = match.group(0).rstrip(".,;:")
        tail = match.group(0)[len(path) :]
        return (re.split(r"[/\\]", path.rstrip("/\\"))[-1] or "/") + tail

    return _PATH.sub(name, message)


class NeedsWeights(RequestError):
    """An id whose task has no model here and no honest stand-in (translation): refused with
    the command that gets its weights (answered 400/5007, as an id not served)."""

    def __init__(self, model: str, task: str, command: str) -> None:
        super().__init__(
            f"{model}: no {task} model is on this server, and nothing here can stand in for "
            f"one; get its weights with `{command}` (or serve a model of the task with "
            "[models.NAME] path = its folder)"
        )
        self.model = model


class ModelUnavailable(RequestError):
    """The id is known, but the local model behind it could not be loaded (the reason without
    the server's paths: the log has them)."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"{model} is not available on this server: {without_paths(reason)}")
        self.model = model


class QueueLimit(RequestError):
    """A batch would take an account past its queued items (answered 429/3040)."""

    def __init__(self, items: int, queued: int, limit: int) -> None:
        super().__init__(
            f"the batch queue holds {queued} unfinished items of this account and takes at most "
            f"{limit}: {items} more do not fit; poll the queued batches and try again"
        )


class AllocationSpent(RequestError):
    """The daily neuron allocation is spent (answered 429/3036)."""

    def __init__(self, daily: float, spent: float) -> None:
        super().__init__(
            f"you have used up your daily allocation of {daily:g} neurons "
            f"({spent:.1f} spent today, UTC)"
        )


class BatchNotFound(RequestError):
    """No queued batch of that id for this account and token (answered 404/7003): never
    queued, queued by someone else, or deleted after its retention."""

    def __init__(self, batch: str, retention: float) -> None:
        hours = f"{retention / 3600:g} h" if retention >= 3600 else f"{retention:g} s"
        super().__init__(
            f"no queued request {batch} for this account: unknown, or its results expired "
            f"(they are kept {hours} after the batch finished)"
        )


class WeightsDownloading(RequestError):
    """The id's real weights are being pulled (auto_pull): answered 503/3043 with Retry-After,
    the progress in the message."""

    def __init__(self, model: str, progress: str) -> None:
        super().__init__(f"{model}: its weights are downloading ({progress}); retry shortly")
        self.model = model
