"""What submitting a request to an engine may raise, whatever its family."""


class EngineError(Exception):
    """Base class of what submitting a request may raise."""


class EngineBusy(EngineError):
    """No room: the waiting queue is full, or rejectIfBusy found no free slot."""


class PromptTooLong(EngineError):
    """The input does not fit the model (prompt plus max_tokens over the context, audio
    longer than the engine takes)."""


class EngineStopped(EngineError):
    """The engine (or backend) is closed, or closing: it takes no more requests."""


class ModelLoadError(EngineError):
    """The weights are missing, truncated, otherwise unloadable, or crash the engine with
    every setting tried."""
