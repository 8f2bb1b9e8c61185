"""The `wai` command: serve, run, models, usage, wrangler-config."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import re
import signal
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from wai import sources
from wai.backends.base import Delta, EngineError, Failed, Finished
from wai.errors import RequestError
from wai.settings import PERMISSIONS, Settings, SettingsError, load_settings
from wai.usage import UsageStore


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    flags = {
        "engine.slots": getattr(args, "slots", None),
        "engine.ctx_per_slot": getattr(args, "ctx_per_slot", None),
        "engine.gpu_layers": getattr(args, "gpu_layers", None),
        "engine.threads": getattr(args, "threads", None),
        "memory_budget": getattr(args, "memory_budget", None),
        "log_level": getattr(args, "log_level", None),
    }
    model: Path | None = getattr(args, "model_path", None)
    serves: list[str] = getattr(args, "serves", None) or []
    if serves and model is None:
        sys.exit("wai: --serves needs --model")
    if model is not None and serves:
        name = re.sub(r"[^A-Za-z0-9_-]+", "-", model.stem)  # a dotted key must not split it
        flags[f"models.{name}"] = {"path": str(model), "serves": serves, "load": "eager"}
    elif model is not None:
        flags["default_model"] = str(model)
    try:
        return load_settings(config=args.config, overrides={**flags, **overrides})
    except SettingsError as e:
        sys.exit(f"wai: {e}")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from wai.api.app import create_app

    settings = _settings(args, host=args.host, port=args.port, tokens=args.token or None)
    if not settings.tokens and not settings.access and not settings.loopback:
        print(
            f"wai: refusing to serve on {settings.host} with no tokens: set --token or WAI_TOKENS,"
            " or bind to 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # the access log: one JSON object per line, nothing around it
    access = logging.StreamHandler()
    access.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("wai.access").addHandler(access)
    logging.getLogger("wai.access").propagate = False
    count = len(settings.tokens) + len(settings.access)
    mode = f"{count} token(s)" if count else "open local mode (no tokens)"
    logging.getLogger("wai").info(
        "serving on http://%s:%d, %s; the playground: http://%s:%d/",
        settings.host,
        settings.port,
        mode,
        settings.host,
        settings.port,
    )
    # uvicorn drains on SIGTERM (stops accepting, waits up to drain_seconds for in-flight
    # requests), then re-raises the signal with the handler it found. A no-op handler here makes
    # a completed drain exit 0 instead of dying by the signal.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=math.ceil(settings.drain_seconds),
        loop="uvloop",
        http="httptools",
    )
    logging.getLogger("wai").info("drained and stopped")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from wai.runtime import Runtime
    from wai.schemas.text_generation import parse_text_generation

    settings = _settings(args)
    body: dict[str, Any] = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    if args.seed is not None:
        body["seed"] = args.seed
    if args.system:
        body["messages"] = [
            {"role": "system", "content": args.system},
            {"role": "user", "content": args.prompt},
        ]
    else:
        body["prompt"] = args.prompt

    async def go() -> int:
        runtime = Runtime(settings)
        await runtime.start()
        try:
            _, generation = await runtime.submit(args.model, parse_text_generation(body))
            parts: list[str] = []
            async for ev in generation:
                if isinstance(ev, Delta):
                    parts.append(ev.text)
                    if args.stream:
                        print(ev.text, end="", flush=True)
                elif isinstance(ev, Failed):
                    print(f"\nwai: {ev.message}", file=sys.stderr)
                    return 1
                elif isinstance(ev, Finished) and not args.stream:
                    print("".join(parts), end="")
            print()
            return 0
        finally:
            await runtime.close()

    try:
        return asyncio.run(go())
    except (RequestError, EngineError) as e:
        print(f"wai: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def cmd_models(args: argparse.Namespace) -> int:
    from wai.engines.llamacpp import hardware
    from wai.runtime import Runtime

    settings = _settings(args)
    if args.loaded:
        return _print_loaded(settings, args.url, args.token)
    runtime = Runtime(settings)
    weights = _weights(settings)
    width = max(len(s.id) for s in runtime.models.catalog.specs)
    print(f"{'MODEL ID'.ljust(width)}  {'TASK':28}  CONTEXT  {'REAL WEIGHTS':17}  SERVED BY")
    for spec in runtime.models.catalog.specs:
        ctx = str(spec.context_window or "-")
        served_by = runtime.models.model_for(spec.id) or "- (a task wai does not run)"
        have = weights.get(spec.id, "-")
        print(f"{spec.id.ljust(width)}  {spec.task.name:28}  {ctx:>7}  {have:17}  {served_by}")
    layers = hardware.gpu_layers(settings.engine.gpu_layers, hardware.gpu_available())
    device = hardware.placement(layers)
    print(f"\n{'MODEL'.ljust(width)}  DEVICE / FILE, or UPSTREAMS")
    for name, local in runtime.models.configs.items():
        if local.upstreams:
            print(f"{name.ljust(width)}  upstream: {', '.join(u.url for u in local.upstreams)}")
        else:
            print(f"{name.ljust(width)}  {device}: {local.path}")
    for name, reason in runtime.models.failed.items():
        print(f"{name.ljust(width)}  unavailable: {reason}")
    return 0


def _weights(settings: Settings) -> dict[str, str]:
    """Per id with a curated GGUF: pulled (and its size), or not yet (`wai pull`)."""
    from wai import hub

    out = {}
    cache = sources.hf_cache_dir()
    for model_id, f in hub.load_sources(settings.hub_sources).files.items():
        path = hub.cached(f, cache)
        out[model_id] = f"pulled, {hub.size_text(hub.disk_size(path))}" if path else "wai pull"
    return out


def _print_loaded(settings: Settings, url: str | None, token: str | None) -> int:
    import os

    import httpx

    base = url or f"http://{settings.host}:{settings.port}"
    token = token or os.environ.get("WAI_TOKEN") or (settings.tokens or [""])[0]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.get(f"{base}/wai/v1/stats", headers=headers, timeout=10)
    except httpx.HTTPError as e:
        print(f"wai: cannot reach {base}: {e}", file=sys.stderr)
        return 1
    if r.status_code != 200:
        print(f"wai: {base} answered {r.status_code}: {r.text[:200]}", file=sys.stderr)
        return 1
    reg = r.json()["registry"]
    budget = reg["memory_budget_bytes"]
    print(
        f"memory: {reg['memory_used_bytes'] / 2**20:.0f} MiB in use of "
        + (f"{budget / 2**20:.0f} MiB" if budget else "no budget")
    )
    width = max([len("LOCAL MODEL"), *(len(n) for n in reg["models"])])
    print(f"{'LOCAL MODEL'.ljust(width)}  STATE     LOAD   MIB   LEASES  LOADS  UNLOADS  IDLE S")
    for name, m in reg["models"].items():
        idle = "-" if m["idle_seconds"] is None else f"{m['idle_seconds']:.0f}"
        print(
            f"{name.ljust(width)}  {m['state']:8}  {m['load']:5}  {m['bytes'] / 2**20:4.0f}  "
            f"{m['leases']:6}  {m['loads']:5}  {m['unloads']:7}  {idle:>6}"
            + (f"  {m['failure']}" if m["failure"] else "")
        )
    return 0


PLUGIN = Path(__file__).resolve().parent.parent / "integrations" / "wrangler" / "wai-ai-plugin.mjs"

WRANGLER_SNIPPET = """\
# wrangler.local.toml: dev only (`wrangler dev -c wrangler.local.toml`). An "unsafe" binding is
# uploaded as-is on deploy: keep this block out of your production configuration.
[[unsafe.bindings]]
name = "{binding}"
type = "wai-ai"
dev = {{ plugin = {{ package = "{plugin}", name = "wai-ai" }}, \
options = {{ address = "{address}", token = "{token}" }} }}

# Keep wrangler offline:
#   export WRANGLER_SEND_METRICS=false WRANGLER_HIDE_BANNER=true CLOUDFLARE_CF_FETCH_ENABLED=false

# Miniflare directly:
#   new Miniflare({{ modules: true, scriptPath: "worker.js", compatibilityDate: "2025-09-01",
#     cf: false,
#     unsafeBindings: [{{ name: "{binding}", type: "wai-ai",
#       plugin: {{ package: "{plugin}", name: "wai-ai" }},
#       options: {{ address: "{address}", token: "{token}" }} }}] }})
"""


def cmd_wrangler_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    address = args.address or f"{settings.host}:{settings.port}"
    token = args.token if args.token is not None else (settings.tokens or [""])[0]
    if not PLUGIN.exists():
        print(
            f"wai: the plugin module is not at {PLUGIN} (run from a wai checkout)", file=sys.stderr
        )
        return 1
    print(
        WRANGLER_SNIPPET.format(binding=args.binding, plugin=PLUGIN, address=address, token=token),
        end="",
    )
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    """Download an id's curated weights (or an `hf:` file) into the Hugging Face cache."""
    from wai import hub

    settings = _settings(args)
    table = hub.load_sources(settings.hub_sources)
    if args.list or args.target is None:
        return _print_pullable(table)
    target = args.target
    if target.startswith("hf:"):
        model_id, hub_file = None, hub.parse_file(target)
    elif target in table.files:
        model_id, hub_file = target, table.files[target]
    else:
        why = table.unmapped.get(target, "not a model id wai knows weights for")
        print(f"wai: {target}: {why}; `wai pull --list` shows what can be pulled", file=sys.stderr)
        return 1
    if hub_file.gated or hub_file.license:
        print(f"{hub_file.repo}: license {hub_file.license or 'see the repository'}"
              + (" (gated: HF_TOKEN needed)" if hub_file.gated else ""))  # fmt: skip
    try:
        path = hub.pull(hub_file, say=lambda line: print(line, flush=True))
    except hub.PullError as e:
        print(f"wai: {e}", file=sys.stderr)
        return 1
    print(f"ok: {path}")
    if model_id is not None:
        print(f"next: wai serve, then ask for {model_id}: it is answered by {hub_file.name}")
    else:
        print(f'next: map it in wai.toml: [models.NAME] path = "{target}" and serves = [...]')
    return 0


def _print_pullable(table: Any) -> int:
    from wai import hub

    width = max(len(mid) for mid in table.files)
    print(f"{'MODEL ID'.ljust(width)}  {'QUANT':6}  PULLED    FILE")
    for mid, f in table.files.items():
        path = hub.cached(f)
        here = hub.size_text(hub.disk_size(path)) if path is not None else "-"
        print(f"{mid.ljust(width)}  {f.quant:6}  {here:8}  {f.repo}/{f.file}")
    print(f"\n{len(table.unmapped)} more served ids have no curated file yet (see README).")
    return 0


def _add_pull(sub: Any, common: argparse.ArgumentParser) -> None:
    pull = sub.add_parser(
        "pull",
        parents=[common],
        help="download the real weights of a model id (or an hf: file)",
        description="Downloads the weights chosen for a Workers AI id (a GGUF; for a speech "
        "id a CTranslate2 Whisper folder or a Piper voice and its config; for a translation, "
        "summarization or classification id a Hugging Face folder, converted at its first "
        "load), or an hf:ORG/REPO/FILE.gguf, into the Hugging Face cache with huggingface_hub: "
        "resumable, HF_TOKEN for gated repositories, HF_ENDPOINT for a mirror; every file's "
        "bytes are checked against their SHA-256 (or, for a small file kept in git, its git "
        "blob id) before use. A pulled id is then served by them, with no configuration.",
    )
    pull.add_argument("target", nargs="?", default=None, help="a model id, or hf:ORG/REPO/FILE")
    pull.add_argument("--list", action="store_true", help="what can be pulled, and what is")
    pull.set_defaults(func=cmd_pull)


def _database(args: argparse.Namespace) -> Path:
    """The usage database (the batch queue's too): --db, else the settings'."""
    settings = _settings(args)
    path: Path = args.db or settings.usage_db or settings.cache_dir / "usage.db"
    return path


def cmd_usage(args: argparse.Namespace) -> int:
    path = _database(args)
    if not path.exists():
        print(f"wai: no usage recorded yet ({path} does not exist)", file=sys.stderr)
        return 1
    store = UsageStore(path)
    try:
        rows = store.report(args.since, args.account, args.by)
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = [*(k for k in rows[0] if k not in _TOTALS), *_TOTALS] if rows else list(_TOTALS)
    _table(rows, columns)
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    """The batch queue's batches (newest first), or one batch's items."""
    from wai.queue import QueueStore

    path = _database(args)
    if not path.exists():
        print(f"wai: nothing queued yet ({path} does not exist)", file=sys.stderr)
        return 1
    store = QueueStore(path)
    try:
        if args.request_id is None:
            rows = [b.summary() for b in store.batches(args.account, args.limit)]
            for row in rows:
                row["created"] = _utc(row["created"])
                row["finished"] = _utc(row["finished"]) if row["finished"] else "-"
        else:
            view = store.view(args.request_id)
            if view is None:
                print(f"wai: no batch {args.request_id} (or it expired)", file=sys.stderr)
                return 1
            rows = store.items(args.request_id)
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _table(rows, list(rows[0]) if rows else ["request_id", "status"])
    return 0


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = [["-" if r[c] is None else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _add_queue(sub: Any, common: argparse.ArgumentParser) -> None:
    queue = sub.add_parser(
        "queue",
        parents=[common],
        help="list the batch queue's batches, or one batch's items",
        description="Batches queued with ?queueRequest=true, newest first: status, items done "
        "and failed; with a request id, that batch's items. Reads the database the server "
        "keeps them in (the usage database); works while a server runs.",
    )
    queue.add_argument("request_id", nargs="?", default=None, help="one batch: its items")
    queue.add_argument("--account", default=None, help="one account's batches only")
    queue.add_argument("--limit", type=int, default=50, help="batches listed (default 50)")
    queue.add_argument("--db", type=Path, default=None, help="the database (default: settings)")
    queue.add_argument("--json", action="store_true", help="JSON instead of a table")
    queue.set_defaults(func=cmd_queue)


_TOTALS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "neurons")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wai", description="A self-hosted, Workers AI-compatible LLM inference server."
    )
    common = _common_options()
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_serve, _add_run, _add_models, _add_pull, _add_wrangler_config, _add_usage,
        _add_queue, _add_token,
    ):  # fmt: skip
        add(sub, common)
    return parser


def _common_options() -> argparse.ArgumentParser:
    """Options every command takes: the config file and the engine's settings."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, default=None, help="TOML configuration file (default: $WAI_CONFIG)"
    )
    engine = common.add_argument_group("engine (each also a WAI_* variable and a config key)")
    engine.add_argument("--slots", type=int, help="sequences decoded together per model")
    engine.add_argument("--ctx-per-slot", type=int, help="context of each sequence, tokens")
    engine.add_argument("--gpu-layers", type=int, help="layers on the GPU (-1: all)")
    engine.add_argument("--threads", type=int, help="CPU threads (0: all cores)")
    engine.add_argument("--memory-budget", help='weights + KV of loaded models, e.g. "6GiB"')
    engine.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="default info"
    )
    return common


def _add_serve(sub: Any, common: argparse.ArgumentParser) -> None:
    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="serve the HTTP API",
        description="Serve the Workers AI REST API.",
    )
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8787)")
    serve.add_argument(
        "--token",
        action="append",
        metavar="T",
        help="accepted Bearer token; repeatable (also $WAI_TOKENS, comma-separated)",
    )
    serve.add_argument(
        "--model",
        dest="model_path",
        type=Path,
        metavar="PATH",
        help="serve this GGUF (no config file needed): with --serves, for those ids; without, "
        "in place of the default model",
    )
    serve.add_argument(
        "--serves",
        action="append",
        metavar="ID",
        help="a model id --model answers; repeatable",
    )
    serve.set_defaults(func=cmd_serve)


def _add_run(sub: Any, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser(
        "run",
        parents=[common],
        help="generate once, without a server",
        description="Run one generation without a server and print it.",
    )
    run.add_argument("model", help="model id, e.g. @cf/meta/llama-2-7b-chat-int8")
    run.add_argument("prompt")
    run.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    run.add_argument("--max-tokens", type=int, default=256)
    run.add_argument("--temperature", type=float, default=0.6)
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--system", default=None, help="system message (uses chat messages)")
    run.set_defaults(func=cmd_run)


def _add_models(sub: Any, common: argparse.ArgumentParser) -> None:
    models = sub.add_parser(
        "models",
        parents=[common],
        help="list the catalog (or, with --loaded, what a running server holds)",
        description="List catalog ids and the local model serving each; with --loaded, ask a "
        "running server which local models it holds, their state, bytes and leases.",
    )
    models.add_argument(
        "--loaded", action="store_true", help="ask a running server (see --url) instead"
    )
    models.add_argument(
        "--url", default=None, help="the server (default http://HOST:PORT of the settings)"
    )
    models.add_argument(
        "--token", default=None, help="Bearer token (default $WAI_TOKEN, else the first token)"
    )
    models.set_defaults(func=cmd_models)


def _add_wrangler_config(sub: Any, common: argparse.ArgumentParser) -> None:
    wrangler = sub.add_parser(
        "wrangler-config",
        parents=[common],
        help="print the wrangler.toml AI binding snippet",
        description="Print the dev-only wrangler.toml [[unsafe.bindings]] block (and the "
        "Miniflare options) that wire a Worker's AI binding to this wai.",
    )
    wrangler.add_argument("--binding", default="AI", help="binding name in the Worker (AI)")
    wrangler.add_argument("--address", default=None, help="wai's host:port (from config)")
    wrangler.add_argument("--token", default=None, help="wai token to send (first configured)")
    wrangler.set_defaults(func=cmd_wrangler_config)


def _add_usage(sub: Any, common: argparse.ArgumentParser) -> None:
    usage = sub.add_parser(
        "usage",
        parents=[common],
        help="print the usage counted so far (requests, tokens, neurons)",
        description="Requests, prompt/completion/cached tokens and neurons per account and "
        "model (or day, or account), read from the usage database; works while a server runs.",
    )
    usage.add_argument("--since", type=_day, default=None, help="first UTC day, YYYY-MM-DD")
    usage.add_argument("--account", default=None, help="one account id only")
    usage.add_argument("--by", choices=["model", "day", "account"], default="model")
    usage.add_argument("--db", type=Path, default=None, help="the database (default: settings)")
    usage.add_argument("--json", action="store_true", help="JSON instead of a table")
    usage.set_defaults(func=cmd_usage)


def cmd_token(args: argparse.Namespace) -> int:
    """A new random token: the value once (for the client), and the configuration entry that
    holds only its SHA-256."""
    import hashlib
    import secrets

    value = secrets.token_urlsafe(32)
    hashed = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    name = args.name
    print(f"token (give it to the client; it is not stored anywhere): {value}\n")
    print("configuration (wai.toml):")
    print(f"[access.{name}]")
    print(f'token = "{hashed}"')
    print(f"accounts = {json.dumps(args.account)}")
    print(f"permissions = {json.dumps(args.permission or list(PERMISSIONS))}")
    return 0


def _add_token(sub: Any, common: argparse.ArgumentParser) -> None:
    token = sub.add_parser(
        "token",
        help="create a token scoped to accounts and permissions",
        description="Prints a new random token and the [access.NAME] entry that holds only "
        "its SHA-256, so that the configuration file keeps no secret.",
    )
    token.add_argument("name", help="the entry's name (e.g. the team's)")
    token.add_argument(
        "--account", action="append", default=[], help="an account id it may use (repeat)"
    )
    token.add_argument(
        "--permission", action="append", choices=PERMISSIONS, help="what it may do (repeat; "
        "default: all of inference, catalog, usage, queue)",
    )  # fmt: skip
    token.set_defaults(func=cmd_token)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
