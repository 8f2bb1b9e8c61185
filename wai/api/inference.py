"""Workers AI's inference as the REST route and the Worker binding both answer it: the model
id's kind picks the input schema (text generation, text embeddings, reranking); parse the inputs,
submit, then stream Workers AI's events or answer the whole result. The two routes differ only
in how they wrap it (the REST envelope or the bare output, and their error shapes): a
`Wrapping` says how."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from wai.answers import binary_answer, cf_answer
from wai.api.access import track
from wai.api.errors import ABORTED, CFError
from wai.api.framing import cf_sse, failed_error, refuse_json_stream, to_cf_error
from wai.api.generation import GenerationResponse, collect
from wai.backends.base import EngineError, Failed
from wai.errors import RequestError
from wai.runtime import Runtime
from wai.schemas import parse_inputs
from wai.schemas.text_generation import TextGenerationInput

# errors a route answers in its own shape
ANSWERED = (CFError, RequestError, EngineError)

SESSION_HEADER = "x-session-affinity"


def session_key(request: Request) -> str:
    """The client's session (Workers AI's `x-session-affinity`; the binding sends its
    `extraHeaders` as headers), hashed: requests with the same one go to the slot (or the
    upstream replica) that holds their conversation. Empty without the header."""
    value = request.headers.get(SESSION_HEADER, "")
    return hashlib.blake2b(value.encode(), digest_size=8).hexdigest() if value else ""


def takes_audio(runtime: Runtime, model_id: str) -> bool:
    """An id that takes audio as the raw body: speech recognition (served or not: one that is
    not is refused by its task, not for a body that is not JSON) and turn detection."""
    spec = runtime.models.spec_for(model_id)
    return spec.kind in _AUDIO_IN or spec.task.name == "Automatic Speech Recognition"


_AUDIO_IN = ("automatic-speech-recognition", "voice-activity-detection")


def body_limit(runtime: Runtime, model_id: str) -> int:
    """How large an inference body may be: `limits.max_body_bytes`, or for a speech id room
    for `limits.max_audio_bytes` of audio as JSON (up to 4 characters a byte: "255,")."""
    limits = runtime.settings.limits
    if takes_audio(runtime, model_id):
        return max(limits.max_body_bytes, 4 * limits.max_audio_bytes + (64 << 10))
    return limits.max_body_bytes


@dataclass(frozen=True, slots=True)
class Wrapping:
    # a whole result (response, tool_calls, usage) and the headers -> the response
    result: Callable[[dict[str, Any], dict[str, str]], Response]
    # an error and the request id -> the response
    error: Callable[[CFError, str], Response]
    aborted: str  # the message when the client went away first


async def run_inference(
    request: Request, model_id: str, inputs: Any, wrapping: Wrapping
) -> Response:
    """Whatever the model id's task: the inputs parsed by the task's schema, submitted, then
    answered whole (or, for a generation asked to stream, streamed)."""
    runtime: Runtime = request.app.state.runtime
    request_id: str = request.state.request_id
    try:
        runtime.name_for(model_id)  # an unknown id, or one of a task not run here: said first
        max_audio = runtime.settings.limits.max_audio_bytes
        parsed = parse_inputs(runtime.models.spec_for(model_id), inputs, max_audio)
        if isinstance(parsed, TextGenerationInput):
            refuse_json_stream(parsed)
        served, generation = await runtime.submit(model_id, parsed, session=session_key(request))
        track(request, served, generation, parsed)  # access log, usage
    except ANSWERED as e:
        return wrapping.error(to_cf_error(e), request_id)
    headers = {"x-wai-model": served.label, "cf-ai-req-id": request_id}
    if isinstance(parsed, TextGenerationInput) and parsed.stream:
        return GenerationResponse(generation, cf_sse(generation), headers)
    done = await collect(request, generation)
    if done is None:
        return wrapping.error(CFError.inference(408, ABORTED, wrapping.aborted), request_id)
    if isinstance(done.final, Failed):
        return wrapping.error(failed_error(done.final), request_id)
    audio = binary_answer(done, parsed)
    if audio is not None:  # Deepgram's ids answer with the audio itself, on every route
        return Response(audio.data, headers={**headers, "content-type": audio.media_type})
    try:
        return wrapping.result(cf_answer(done, parsed), headers)
    except RequestError as e:  # JSON mode's object did not close
        return wrapping.error(to_cf_error(e), request_id)
