"""OpenAI's audio routes, under `/v1/...` and Workers AI's OpenAI base: `POST
/audio/transcriptions` and `/audio/translations` (multipart: `file`, `model`, `language`,
`prompt`, `temperature`, `response_format` json | text | srt | vtt | verbose_json,
`timestamp_granularities[]`), answered by the Whisper id named (OpenAI's `whisper-1` is
`@cf/openai/whisper-large-v3-turbo`: multilingual, language detected); `POST /audio/speech`
(JSON: `model`, `input`, `voice`, `response_format` mp3 | opus | aac | flac | wav | pcm,
`speed`), answered by the text-to-speech id named (OpenAI's `tts-1`, `tts-1-hd` and
`gpt-4o-mini-tts` are `@cf/deepgram/aura-2-en`). Errors in OpenAI's shape."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import JSONResponse, Response

from wai.answers import segment_dict
from wai.api.access import track
from wai.api.body import read_body, read_json
from wai.api.errors import CFError, openai_error, openai_from_cf
from wai.api.framing import failed_error, to_cf_error
from wai.api.generation import collect
from wai.backends.base import (
    EngineError,
    Failed,
    SpeechOptions,
    SpeechOutput,
    SpokenAudio,
    Transcription,
    Voice,
)
from wai.errors import RequestError
from wai.runtime import Runtime, Served
from wai.schemas import TaskInput
from wai.schemas.speech import LANGUAGES, MAX_PROMPT_CHARS, TranscriptionInput
from wai.schemas.tts import MAX_TEXT_CHARS, SpeechInput
from wai.subtitles import srt, vtt

router = APIRouter()

ALIASES = {"whisper-1": "@cf/openai/whisper-large-v3-turbo"}
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
_FIELDS = {
    "file",
    "model",
    "language",
    "prompt",
    "temperature",
    "response_format",
    "timestamp_granularities[]",
}


class _Refused(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        self.message, self.param = message, param


async def transcriptions(request: Request) -> Response:
    return await _handle(request, "transcribe")


async def translations(request: Request) -> Response:
    return await _handle(request, "translate")


async def _handle(request: Request, task: str) -> Response:
    runtime: Runtime = request.app.state.runtime
    fmt, words = "json", False

    async def parse() -> tuple[str, TaskInput]:
        nonlocal fmt, words
        form = await _form(request, runtime)
        model, inp, fmt, words = _parse(runtime, form, task)
        return model, inp

    done = await _run(request, parse)
    if isinstance(done, Response):
        return done
    served, speech = done
    assert isinstance(speech, Transcription)
    return _answer(speech, fmt, words, task, {"x-wai-model": served.model_name})


async def _run(
    request: Request, parse: Callable[[], Awaitable[tuple[str, TaskInput]]]
) -> tuple[Served, SpeechOutput] | Response:
    """Parse, submit and collect one audio request; a refusal or failure as OpenAI's error."""
    runtime: Runtime = request.app.state.runtime
    try:
        model, inp = await parse()
        served, generation = await runtime.submit(model, inp)
        track(request, served, generation, inp)  # access log, usage
    except _Refused as e:
        return openai_error(400, e.message, e.param)
    except (CFError, RequestError, EngineError) as e:
        return openai_from_cf(to_cf_error(e))
    done = await collect(request, generation)
    if done is None:
        return openai_error(408, "the client closed the connection")
    if isinstance(done.final, Failed) or done.speech is None:
        failed = done.final if isinstance(done.final, Failed) else Failed("no output")
        err = failed_error(failed)
        return openai_error(err.status, failed.message, headers=err.headers)
    return served, done.speech


async def _form(request: Request, runtime: Runtime) -> FormData:
    """The multipart body, read whole within the audio limit first (a part's size alone
    would not bound it), then parsed."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _Refused("the body must be multipart/form-data with the audio as 'file'")
    limit = runtime.settings.limits.max_audio_bytes + (64 << 10)
    raw = await read_body(request, limit)

    async def stream() -> AsyncGenerator[bytes, None]:
        yield raw

    parser = MultiPartParser(request.headers, stream(), max_files=1, max_fields=16)
    try:
        return await parser.parse()
    except MultiPartException as e:
        raise _Refused(f"the multipart body cannot be read: {e.message}") from None


def _parse(
    runtime: Runtime, form: FormData, task: str
) -> tuple[str, TranscriptionInput, str, bool]:
    unknown = sorted(set(form.keys()) - _FIELDS)
    if unknown:
        raise _Refused(f"'{unknown[0]}' is not a parameter this server takes", unknown[0])
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _Refused("'file' is required: the audio file", "file")
    model = _text(form, "model") or ""
    model = ALIASES.get(model, model)
    if not model:
        raise _Refused("'model' is required", "model")
    known = runtime.models.model_for(model) is not None
    if known and runtime.models.spec_for(model).kind != "automatic-speech-recognition":
        raise _Refused(f"{model} is not a speech recognition model", "model")
    fmt = _text(form, "response_format") or "json"
    if fmt not in FORMATS:
        raise _Refused(f"'response_format' must be one of {', '.join(FORMATS)}", "response_format")
    grains = set(form.getlist("timestamp_granularities[]"))
    if grains and fmt != "verbose_json":  # as OpenAI: the timings exist in verbose_json only
        where = "timestamp_granularities[]"
        raise _Refused(f"'{where}' needs response_format verbose_json", where)
    if not grains <= {"word", "segment"}:
        raise _Refused(
            "'timestamp_granularities[]' takes 'word' and 'segment'", "timestamp_granularities[]"
        )
    options = _options(form, task)
    audio = upload.file.read()
    if not audio:
        raise _Refused("'file' is empty", "file")
    inp = TranscriptionInput(audio, options, "turbo")
    return model, inp, fmt, "word" in grains


def _options(form: FormData, task: str) -> SpeechOptions:
    language = _text(form, "language")
    if task == "translate" and language is not None:
        raise _Refused("'language' is not a parameter of translations", "language")
    if language is not None and language not in LANGUAGES:
        raise _Refused(
            f"'language': {language!r} is not an ISO-639-1 code Whisper knows", "language"
        )
    prompt = _text(form, "prompt")
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise _Refused(f"'prompt' is longer than {MAX_PROMPT_CHARS} characters", "prompt")
    temperature = 0.0
    if (raw := _text(form, "temperature")) is not None:
        try:
            temperature = float(raw)
        except ValueError:
            raise _Refused("'temperature' must be a number", "temperature") from None
        if not 0.0 <= temperature <= 1.0:
            raise _Refused("'temperature' must be from 0 to 1", "temperature")
    return SpeechOptions(
        task="translate" if task == "translate" else "transcribe",
        language=language,
        initial_prompt=prompt or None,
        temperature=temperature,
    )


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Refused(f"'{name}' must be text, not a file", name)
    return value


def _answer(
    t: Transcription, fmt: str, words: bool, task: str, headers: dict[str, str]
) -> Response:
    cues = [(s.start, s.end, s.text) for s in t.segments]
    if fmt == "text":
        return Response(t.text + "\n", media_type="text/plain; charset=utf-8", headers=headers)
    if fmt in ("srt", "vtt"):
        body = srt(cues) if fmt == "srt" else vtt(cues)
        return Response(body, media_type="text/plain; charset=utf-8", headers=headers)
    if fmt == "json":
        return JSONResponse({"text": t.text}, headers=headers)
    return JSONResponse(_verbose(t, words, task), headers=headers)


def _verbose(t: Transcription, words: bool, task: str) -> dict[str, Any]:
    segments = []
    for i, s in enumerate(t.segments):
        d = segment_dict(s)
        del d["words"]
        segments.append({"id": i, "seek": int(s.start * 100), **d, "tokens": []})
    out: dict[str, Any] = {
        "task": task,
        "language": "en" if task == "translate" else t.language,
        "duration": t.duration,
        "text": t.text,
        "segments": segments,
    }
    if words:
        out["words"] = [
            {"word": w.word.strip(), "start": w.start, "end": w.end}
            for s in t.segments
            for w in s.words
        ]
    return out


# OpenAI's names: the models, the voices (one stand-in voice speaks for each) and formats
SPEECH_ALIASES = dict.fromkeys(("tts-1", "tts-1-hd", "gpt-4o-mini-tts"), "@cf/deepgram/aura-2-en")
OPENAI_VOICES = frozenset(
    [
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "onyx",
        "nova",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    ]
)
# response_format -> (encoding, container, sample rate: None for the voice's own)
SPEECH_FORMATS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "none", None),
    "opus": ("opus", "ogg", 48000),
    "aac": ("aac", "none", None),
    "flac": ("flac", "none", None),
    "wav": ("linear16", "wav", None),
    "pcm": ("linear16", "none", 24000),  # OpenAI's pcm: 24 kHz, 16-bit little-endian
}
_SPEECH_FIELDS = {"model", "input", "voice", "response_format", "speed"}


async def speech(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime

    async def parse() -> tuple[str, TaskInput]:
        body = await read_json(request, runtime.settings.limits.max_body_bytes)
        return _speech_input(runtime, body)

    done = await _run(request, parse)
    if isinstance(done, Response):
        return done
    served, audio = done
    assert isinstance(audio, SpokenAudio)
    headers = {"x-wai-model": served.label, "content-type": audio.media_type}
    return Response(audio.data, headers=headers)


def _speech_input(runtime: Runtime, body: object) -> tuple[str, SpeechInput]:
    if not isinstance(body, dict):
        raise _Refused("the body must be a JSON object")
    unknown = sorted(set(body) - _SPEECH_FIELDS)
    if unknown:
        raise _Refused(f"'{unknown[0]}' is not a parameter this server takes", unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _Refused("'model' is required", "model")
    model = SPEECH_ALIASES.get(model, model)
    known = runtime.models.model_for(model) is not None
    if known and runtime.models.spec_for(model).kind != "text-to-speech":
        raise _Refused(f"{model} is not a text-to-speech model", "model")
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise _Refused("'input' is required: the text to speak", "input")
    if len(text) > MAX_TEXT_CHARS:
        raise _Refused(f"'input' is longer than {MAX_TEXT_CHARS} characters", "input")
    voice = body.get("voice")
    if not isinstance(voice, str) or voice not in OPENAI_VOICES:
        raise _Refused(f"'voice' must be one of {', '.join(sorted(OPENAI_VOICES))}", "voice")
    fmt = body.get("response_format", "mp3")
    if fmt not in SPEECH_FORMATS:
        raise _Refused(
            f"'response_format' must be one of {', '.join(SPEECH_FORMATS)}", "response_format"
        )
    speed = body.get("speed", 1.0)
    if not isinstance(speed, int | float) or isinstance(speed, bool) or not 0.25 <= speed <= 4:
        raise _Refused("'speed' must be a number from 0.25 to 4.0", "speed")
    encoding, container, rate = SPEECH_FORMATS[fmt]
    spoken = Voice(text, float(speed), encoding, container, rate)
    return model, SpeechInput(spoken, "aura", "en", voice)


for base in ("/v1", "/client/v4/accounts/{account_id}/ai/v1"):
    router.add_api_route(
        f"{base}/audio/transcriptions",
        transcriptions,
        methods=["POST"],
        summary="OpenAI audio transcriptions (Whisper)",
    )
    router.add_api_route(
        f"{base}/audio/translations",
        translations,
        methods=["POST"],
        summary="OpenAI audio translations to English (Whisper)",
    )
    router.add_api_route(
        f"{base}/audio/speech", speech, methods=["POST"], summary="OpenAI text to speech"
    )
