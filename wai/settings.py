"""One typed Settings object, from a TOML file, WAI_* environment variables and CLI flags
(later sources win). Nothing else in the server reads the environment for its configuration;
the clients beside it read the one thing they send, a token (`WAI_TOKEN` for `wai models
--loaded` and the Python client, which also takes `CLOUDFLARE_API_TOKEN`), and engine children
inherit the server's environment.

Example `wai.toml`:

    host = "127.0.0.1"
    port = 8787
    tokens = ["a-long-random-secret"]

    [engine]
    slots = 8            # sequences decoded together
    ctx_per_slot = 2048  # context window of each sequence, in tokens

    [limits]
    max_body_bytes = 1048576

    [models.llama2]
    path = "/models/llama-2-7b-chat.Q4_K_M.gguf"
    template = "llama2"
    serves = ["@cf/meta/llama-2-7b-chat-int8", "@cf/meta/llama-2-7b-chat-fp16"]

    [models.llama3-70b]  # served by OpenAI-compatible servers (vLLM, llama-server, TGI, Ollama)
    serves = ["@cf/meta/llama-3.1-70b-instruct"]
    upstreams = [
      {url = "http://gpu-1:8000/v1", model = "meta-llama/Llama-3.1-70B-Instruct"},
      {url = "http://gpu-2:8000/v1", model = "meta-llama/Llama-3.1-70B-Instruct"},
    ]
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

# what a model does (catalog.Kind's values; a test keeps the two the same)
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineSettings(_Strict):
    slots: int = Field(8, ge=1, le=256, description="sequences decoded together, per model")
    ctx_per_slot: int = Field(2048, ge=64, le=131072, description="context per sequence (tokens)")
    batch_tokens: int = Field(512, ge=16, le=8192, description="token budget of one step")
    prefill_chunk: int = Field(128, ge=16, le=4096, description="prompt chunk (tokens)")
    threads: int = Field(0, ge=0, le=1024, description="CPU threads; 0 = all cores")
    max_waiting: int = Field(64, ge=0, le=100000, description="queued requests per model")
    flash_attn: bool = Field(True, description="flash attention")
    batch_invariant: bool = Field(
        True,
        description="outputs independent of load (a llama.cpp call per group of equal-length "
        "works); false: prompt chunks share one call with decode rows (faster under load)",
    )
    weights: Literal["auto", "as-is"] = Field(
        "auto", description="auto: compute Q4_1/Q5_1 files as Q8_0 (batched kernels)"
    )
    extra_buffers: Literal["auto", "on", "off"] = Field(
        "auto",
        description="llama.cpp's extra (repacked/AMX) weight buffers; auto: off when "
        "llama.cpp has its AMX path and the CPU has AMX",
    )
    gpu_layers: int = Field(
        -1,
        ge=-1,
        le=100_000,
        description="layers offloaded to the GPU; -1: all when llama.cpp has a GPU backend",
    )
    isolation: Literal["process", "thread"] = Field(
        "process",
        description="process: each model's engine in its own supervised process (a crash "
        "costs that model's requests, then it restarts); thread: in the server's process",
    )
    prompt_cache_bytes: ByteSize | None = Field(
        None,
        description="host RAM per model for prompt prefixes that slots evict (LRU); "
        "unset: an eighth of the memory available at load, at most 8 GiB; 0: none",
    )
    speculation: Literal["ngram", "off"] = Field(
        "ngram",
        description="speculative decoding: ngram: drafts from each sequence's own prompt and "
        "output (prompt lookup), verified where the measured acceptance pays; off: none",
    )
    draft_max: int = Field(16, ge=1, le=32, description="tokens a sequence drafts per step")
    draft_min: int = Field(
        0,
        ge=0,
        le=32,
        description="verify at least this many drafted tokens whenever there are some, "
        "whether or not they pay (0: as many as the measured acceptance and costs pay)",
    )
    probe_fault: str = Field(
        "",
        pattern=r"^ *((any|extra_buffers|converted|gpu) *(, *|$))*$",
        description="fault injection: make the warm-up probe abort for matching settings "
        "(comma-separated: any, extra_buffers, converted, gpu)",
    )

    @model_validator(mode="after")
    def _budget_fits(self) -> EngineSettings:
        if self.batch_tokens < self.slots + self.prefill_chunk:
            raise ValueError("engine.batch_tokens must be at least slots + prefill_chunk")
        if self.draft_min > self.draft_max:
            raise ValueError("engine.draft_min must be at most engine.draft_max")
        return self


class QueueSettings(_Strict):
    """The batch queue (`?queueRequest=true`): its bounds and how long results are kept."""

    max_body_bytes: int = Field(
        10_000_000, ge=1024, le=1 << 30, description="a queued batch's request body"
    )
    max_items: int = Field(10_000, ge=1, le=1_000_000, description="requests in one batch")
    max_queued_per_account: int = Field(
        100_000, ge=1, le=100_000_000, description="items waiting or running per account (3040)"
    )
    retention_seconds: float = Field(
        86_400, gt=0, description="how long a finished batch's results are kept"
    )
    max_attempts: int = Field(
        3, ge=1, le=100, description="runs of an item whose engine died under it"
    )


class Limits(_Strict):
    max_body_bytes: int = Field(1 << 20, ge=1024, description="request body size")
    max_prompt_chars: int = Field(200_000, ge=1, description="length of `prompt`")
    max_messages: int = Field(256, ge=1, description="number of `messages`")
    max_message_chars: int = Field(200_000, ge=1, description="length of one message")
    max_tokens: int = Field(4096, ge=1, description="cap on `max_tokens`")
    max_header_bytes: int = Field(16384, ge=1024, description="total size of request headers")
    # speech: the audio itself (a JSON body of it may be up to 4x this: an array of byte values)
    max_audio_bytes: int = Field(25 << 20, ge=1024, description="size of one audio input")
    max_audio_seconds: float = Field(7200.0, ge=1.0, description="duration of one audio input")


class ModelLimits(_Strict):
    """Per-model overrides of `limits` (None: the server's)."""

    max_tokens: int | None = Field(None, ge=1, description="cap on `max_tokens`")
    max_prompt_chars: int | None = Field(None, ge=1, description="length of `prompt`")
    max_messages: int | None = Field(None, ge=1, description="number of `messages`")
    max_message_chars: int | None = Field(None, ge=1, description="length of one message")


class Upstream(_Strict):
    """One OpenAI-compatible server (a replica) serving a model: vLLM's `vllm serve`, llama.cpp's
    `llama-server`, TGI, Ollama's `/v1`."""

    url: str = Field(
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        max_length=2048,
        description="its OpenAI base URL, e.g. http://gpu-1:8000/v1",
    )
    model: str | None = Field(
        None, max_length=512, description="the model name it serves (None: the entry's name)"
    )
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding its API key (sent as a Bearer token)",
    )
    max_in_flight: int = Field(64, ge=1, le=100_000, description="requests at once")
    timeout_s: float = Field(
        600.0, gt=0, le=86_400, description="seconds for a whole request (3007 past it)"
    )
    connect_timeout_s: float = Field(5.0, gt=0, le=600, description="seconds to connect")
    # read from `api_key_env` by load_settings: never written in a file
    _api_key: str | None = PrivateAttr(None)

    @property
    def api_key(self) -> str | None:
        return self._api_key


_LOCAL_ONLY = (
    "path",
    "slots",
    "ctx_per_slot",
    "gpu_layers",
    "threads",
    "draft",
    "compute_type",
)


class ModelConfig(_Strict):
    """A model entry: a GGUF file served here (`path`), or upstream servers (`upstreams`)."""

    path: Path | None = None
    upstreams: list[Upstream] = Field(default_factory=list, max_length=64)
    # upstream models: seconds between health checks of each replica
    health_interval_s: float = Field(5.0, ge=0.1, le=3600)
    template: Literal["auto", "llama2", "chatml"] = "auto"
    # what the model does; "auto": read from its GGUF (a BERT-like model with pooling embeds,
    # one with rank pooling, a classification head, reranks); an upstream model says it here
    task: Literal["auto", Kind] = "auto"
    serves: list[str] = Field(default_factory=list)
    # None: engine.* of the server
    slots: int | None = Field(None, ge=1, le=256)
    ctx_per_slot: int | None = Field(None, ge=64, le=131072)
    gpu_layers: int | None = Field(None, ge=-1, le=100_000)
    threads: int | None = Field(None, ge=0, le=1024)
    # speculative decoding with a small model of the same vocabulary: a GGUF path, or the name
    # of another local model entry (None: prompt lookup, see engine.speculation)
    draft: str | None = Field(None, min_length=1, max_length=4096)
    load: Literal["lazy", "eager"] = "lazy"
    # a text-to-text model's CTranslate2 compute type; auto: int8 for translation and
    # summarization (about 3x the speed of float32 on a CPU), float32 for classification
    compute_type: Literal["auto", "int8", "float32"] | None = None
    limits: ModelLimits = ModelLimits()

    @model_validator(mode="after")
    def _local_or_upstream(self) -> ModelConfig:
        if self.upstreams:
            given = [f for f in _LOCAL_ONLY if getattr(self, f) is not None]
            if self.template != "auto":
                given.append("template")
            if given:
                raise ValueError(
                    f"{', '.join(given)}: only for a local model, not one with upstreams"
                )
        elif self.path is None:
            raise ValueError("a model needs a `path` (a GGUF file) or `upstreams`")
        return self

    @property
    def local_path(self) -> Path:
        """The GGUF file of a local model."""
        assert self.path is not None, "an upstream model has no file"
        return self.path


# What a scoped token may do (Cloudflare's tokens carry permissions the same way).
Permission = Literal["inference", "catalog", "usage", "queue"]
PERMISSIONS: tuple[Permission, ...] = ("inference", "catalog", "usage", "queue")


class AccessEntry(_Strict):
    """A token scoped to accounts and permissions (`[access.NAME]`)."""

    # its value, or `sha256:<64 hex>` so that the file holds no secret (`wai token` prints one)
    token: str = Field(min_length=1, max_length=512)
    # the account ids it may use; the first is its account where a route names none (the
    # binding, /v1/...). Empty: any account id.
    accounts: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=1000
    )
    permissions: list[Permission] = Field(default_factory=lambda: list(PERMISSIONS))


class Settings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    # tokens that may use any account id (each its own allocation and limits); a value or
    # `sha256:<hex>`
    tokens: list[str] = Field(default_factory=list)
    access: dict[str, AccessEntry] = Field(default_factory=dict)
    # Host names accepted besides the loopback ones (which a loopback bind always accepts).
    # Bound elsewhere with this empty, any Host is accepted.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Inference requests per minute per token; 0 = no limit.
    rate_limit_rpm: int = Field(0, ge=0, le=1_000_000)
    # Per task, as Workers AI limits each task on its own (e.g. text-embeddings = 3000): these
    # override rate_limit_rpm for that task's requests, each task a bucket of its own.
    rate_limits: dict[
        Kind,
        Annotated[int, Field(ge=0, le=1_000_000)],
    ] = Field(default_factory=dict)
    # GET /metrics without a token (for a Prometheus on a trusted network)
    metrics_public: bool = False
    # Usage accounting (SQLite); None: <cache_dir>/usage.db
    usage_db: Path | None = None
    # A JSON file of GGUF sources for ids (wai pull), over the packaged table (wai/hub.py)
    hub_sources: Path | None = None
    # The first request for an id with a curated source not yet pulled starts its download
    # (503/3043 with the progress until it is there); off: only `wai pull` downloads
    auto_pull: bool = False
    # Neurons per account per UTC day; past it inference answers 429/3036. 0: no allocation.
    daily_neurons: float = Field(0.0, ge=0)
    engine: EngineSettings = EngineSettings()
    limits: Limits = Limits()
    queue: QueueSettings = QueueSettings()
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    # The local model answering catalog ids that no entry in `models` serves. None: embedded.
    default_model: Path | None = None
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "wai")
    # On SIGTERM: stop accepting, let in-flight requests finish for up to this long, then exit.
    drain_seconds: float = Field(30.0, ge=0, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Put prompts and outputs in the access log (off: they are never logged)
    log_content: bool = False
    # When set, local model paths must stay inside these folders (see sources.py).
    model_roots: list[Path] = Field(default_factory=list)
    # Weights + KV cache of all loaded models; None: no limit (see registry.py).
    memory_budget: ByteSize | None = None
    # Lazy models unused this long are unloaded; 0: never.
    idle_unload_seconds: float = Field(0.0, ge=0, le=30 * 86400)
    # How long a request waits for room in the budget before 429.
    load_wait_seconds: float = Field(30.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _models_fit_the_batch(self) -> Settings:
        e = self.engine
        for name, m in self.models.items():
            if m.slots is not None and e.batch_tokens < m.slots + e.prefill_chunk:
                raise ValueError(
                    f"models.{name}.slots: engine.batch_tokens ({e.batch_tokens}) must be at "
                    f"least slots + engine.prefill_chunk ({m.slots + e.prefill_chunk})"
                )
        return self

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


class SettingsError(ValueError):
    pass


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_ENV = {
    "WAI_HOST": ("host", str),
    "WAI_PORT": ("port", int),
    "WAI_TOKENS": ("tokens", lambda v: [t.strip() for t in v.split(",") if t.strip()]),
    "WAI_DEFAULT_MODEL": ("default_model", str),
    "WAI_CACHE_DIR": ("cache_dir", str),
    "WAI_DRAIN_SECONDS": ("drain_seconds", float),
    "WAI_MEMORY_BUDGET": ("memory_budget", str),
    "WAI_LOG_LEVEL": ("log_level", str),
    "WAI_LOG_CONTENT": ("log_content", str),
    "WAI_MODEL_ROOTS": ("model_roots", lambda v: [p for p in v.split(os.pathsep) if p]),
    "WAI_IDLE_UNLOAD_SECONDS": ("idle_unload_seconds", float),
    "WAI_LOAD_WAIT_SECONDS": ("load_wait_seconds", float),
    "WAI_ALLOWED_HOSTS": ("allowed_hosts", lambda v: [h.strip() for h in v.split(",") if h]),
    "WAI_RATE_LIMIT_RPM": ("rate_limit_rpm", int),
    "WAI_RATE_LIMITS": ("rate_limits", lambda v: _task_limits(v)),
    "WAI_METRICS_PUBLIC": ("metrics_public", str),
    "WAI_USAGE_DB": ("usage_db", str),
    "WAI_HUB_SOURCES": ("hub_sources", str),
    "WAI_AUTO_PULL": ("auto_pull", str),
    "WAI_DAILY_NEURONS": ("daily_neurons", float),
    "WAI_MAX_HEADER_BYTES": ("limits.max_header_bytes", int),
    "WAI_WEIGHTS": ("engine.weights", str),
    "WAI_EXTRA_BUFFERS": ("engine.extra_buffers", str),
    "WAI_GPU_LAYERS": ("engine.gpu_layers", int),
    "WAI_PROBE_FAULT": ("engine.probe_fault", str),
    "WAI_ENGINE_ISOLATION": ("engine.isolation", str),
    "WAI_BATCH_INVARIANT": ("engine.batch_invariant", str),
    "WAI_SLOTS": ("engine.slots", int),
    "WAI_CTX_PER_SLOT": ("engine.ctx_per_slot", int),
    "WAI_THREADS": ("engine.threads", int),
    "WAI_MAX_WAITING": ("engine.max_waiting", int),
    "WAI_MAX_BODY_BYTES": ("limits.max_body_bytes", int),
    "WAI_MAX_TOKENS": ("limits.max_tokens", int),
    "WAI_MAX_PROMPT_CHARS": ("limits.max_prompt_chars", int),
    "WAI_MAX_MESSAGES": ("limits.max_messages", int),
    "WAI_MAX_MESSAGE_CHARS": ("limits.max_message_chars", int),
    "WAI_MAX_AUDIO_BYTES": ("limits.max_audio_bytes", int),
    "WAI_MAX_AUDIO_SECONDS": ("limits.max_audio_seconds", float),
    "WAI_BATCH_TOKENS": ("engine.batch_tokens", int),
    "WAI_PREFILL_CHUNK": ("engine.prefill_chunk", int),
    "WAI_PROMPT_CACHE_BYTES": ("engine.prompt_cache_bytes", str),
    "WAI_FLASH_ATTN": ("engine.flash_attn", str),
    "WAI_SPECULATION": ("engine.speculation", str),
    "WAI_DRAFT_MAX": ("engine.draft_max", int),
    "WAI_DRAFT_MIN": ("engine.draft_min", int),
    "WAI_QUEUE_MAX_BODY_BYTES": ("queue.max_body_bytes", int),
    "WAI_QUEUE_MAX_ITEMS": ("queue.max_items", int),
    "WAI_QUEUE_MAX_ATTEMPTS": ("queue.max_attempts", int),
    "WAI_QUEUE_MAX_QUEUED": ("queue.max_queued_per_account", int),
    "WAI_QUEUE_RETENTION_SECONDS": ("queue.retention_seconds", float),
}


def _task_limits(value: str) -> dict[str, str]:
    """`text-embeddings=3000,text-generation=300` (validated as the file's table is)."""
    pairs = (item.partition("=") for item in value.split(",") if item.strip())
    return {task.strip(): rpm.strip() for task, _, rpm in pairs}


def env_var_for(key: str) -> str | None:
    """The WAI_* variable that sets a settings key (dotted), if any."""
    return next((var for var, (k, _) in _ENV.items() if k == key), None)


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        data = data.setdefault(p, {})
    data[leaf] = value


def load_settings(
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """TOML file, then environment, then explicit overrides (dotted keys, e.g. CLI flags)."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    path = config or (Path(env["WAI_CONFIG"]) if env.get("WAI_CONFIG") else None)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SettingsError(f"cannot read config {path}: {e}") from e
    for var, (key, conv) in _ENV.items():
        if env.get(var):
            try:
                _set(data, key, conv(env[var]))  # type: ignore[operator]
            except ValueError as e:
                raise SettingsError(f"{var}: {e}") from e
    for key, value in (overrides or {}).items():
        if value is not None:
            _set(data, key, value)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as e:
        raise SettingsError(str(e)) from e
    resolve_api_keys(settings, env)
    return settings


def resolve_api_keys(settings: Settings, env: Mapping[str, str]) -> None:
    """Each upstream's API key, from the variable its `api_key_env` names (which must be set)."""
    for name, model in settings.models.items():
        for i, up in enumerate(model.upstreams):
            if up.api_key_env is None:
                continue
            key = env.get(up.api_key_env)
            if not key:
                raise SettingsError(
                    f"models.{name}.upstreams[{i}].api_key_env: {up.api_key_env} is not set"
                )
            up._api_key = key
