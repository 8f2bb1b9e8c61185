"""Request schemas per task, and the parse that picks one by the model id's kind."""

from __future__ import annotations

from typing import Any

from wai.catalog import NOVA_3, TEXT2TEXT_KINDS, ModelSpec
from wai.errors import InvalidInput
from wai.schemas.embeddings import EmbeddingInput, parse_embeddings
from wai.schemas.nova import parse_nova
from wai.schemas.reranking import RerankInput, parse_rerank
from wai.schemas.speech import TranscriptionInput, parse_transcription
from wai.schemas.text2text import Text2TextInput, parse_text2text
from wai.schemas.text_generation import TextGenerationInput, parse_text_generation
from wai.schemas.tts import SpeechInput, parse_speech
from wai.schemas.turn import TurnInput, parse_turn

TaskInput = (
    TextGenerationInput
    | EmbeddingInput
    | RerankInput
    | TranscriptionInput
    | SpeechInput
    | TurnInput
    | Text2TextInput
)

DEFAULT_MAX_AUDIO_BYTES = 25 << 20


def parse_inputs(
    spec: ModelSpec, inputs: Any, max_audio_bytes: int = DEFAULT_MAX_AUDIO_BYTES
) -> TaskInput:
    """The inputs, by the schema of the id's kind (bge-m3 also takes its query mode; a speech
    id also takes the audio itself, as `RawAudio`)."""
    if spec.id == NOVA_3:
        return parse_nova(inputs, max_audio_bytes)
    if spec.kind == "automatic-speech-recognition":
        return parse_transcription(spec.id, inputs, max_audio_bytes)
    if spec.kind == "text-to-speech":
        return parse_speech(spec.id, inputs)
    if spec.kind == "voice-activity-detection":
        return parse_turn(spec.id, inputs, max_audio_bytes)
    if isinstance(inputs, dict) and "requests" in inputs:
        raise InvalidInput(
            "'/requests': a batch goes to the batch queue: send it with ?queueRequest=true "
            "(REST), or the option queueRequest: true (the binding)"
        )
    if spec.kind in TEXT2TEXT_KINDS:
        return parse_text2text(spec.id, spec.kind, inputs)
    if spec.kind == "reranking":
        return parse_rerank(inputs)
    if spec.kind == "text-embeddings":
        if spec.query_mode and isinstance(inputs, dict) and "contexts" in inputs:
            return parse_rerank(inputs, query_required=False)
        return parse_embeddings(inputs)
    return parse_text_generation(inputs)
