"""A llama.cpp engine process: `python -m wai.engines.llamacpp.worker SPEC` runs one model.

Started and supervised by process.py (through the shared machinery, engines/process/). SPEC
(JSON) holds the model's LlamaCppConfig, the number of fallback plans to skip, the two pipe
descriptors and the log level. The main thread runs the engine's step loop; a reader thread
feeds it what the server sends. Signals and the server going away: see frames.start_child.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import msgspec

from wai.engines.llamacpp import wire
from wai.engines.llamacpp.config import LlamaCppConfig
from wai.engines.llamacpp.llamacpp import LlamaCppEngine, StepLoop, step_loop
from wai.engines.llamacpp.types import Counters, ModelLoadError, TokenEvent
from wai.engines.process.child import EXIT_LOAD_FAILED
from wai.engines.process.frames import Sender, start_child

log = logging.getLogger("wai.engines")


class WorkerSpec(msgspec.Struct):
    config: dict[str, Any]
    skip_plans: int
    fd_in: int
    fd_out: int
    log_level: int = logging.INFO
    step_costs: dict[int, float] = {}  # what an earlier process of this plan measured


class _Sender(Sender):
    def step(self, events: list[tuple[int, TokenEvent]], counters: Counters) -> None:
        self.send(wire.Step([wire.event_msg(rid, ev) for rid, ev in events], counters))


def _read(fd: int, engine: StepLoop) -> None:
    """Reader thread: the server's messages into the engine's inbox, until Stop or EOF."""
    try:
        while True:
            msg = wire.read_to_engine(fd)
            if msg is None or isinstance(msg, wire.Stop):
                break
            if isinstance(msg, wire.Submit | wire.SubmitEmbed):
                engine.submit(msg.request)
            else:
                engine.cancel(msg.request_id)
    except (OSError, ValueError, msgspec.DecodeError) as e:
        log.error("engine channel broken: %s", e)
    finally:
        engine.stop()


def main(argv: list[str]) -> int:
    spec = msgspec.json.decode(argv[1], type=WorkerSpec)
    config = LlamaCppConfig.from_dict(spec.config)
    start_child(spec.log_level, config.name)
    out = _Sender(spec.fd_out)
    try:
        engine = step_loop(config, out.step, skip_plans=spec.skip_plans, step_costs=spec.step_costs)
    except ModelLoadError as e:
        out.send(wire.Fatal(str(e)))
        return EXIT_LOAD_FAILED

    warm_up_rc = 0

    def ready(rc: int) -> None:
        nonlocal warm_up_rc
        warm_up_rc = rc
        if rc != 0:
            out.send(wire.Fatal(f"the warm-up decode of {config.path} failed (rc={rc})"))
            return
        out.send(
            wire.Ready(
                n_ctx_seq=engine.n_ctx_seq,
                chat_template=engine.chat_template,
                metadata=engine.metadata,
                info=engine.info,
                kv_bytes=engine.kv_bytes,
                weights_bytes=engine.weights_bytes,
                step_costs=engine.step_costs if isinstance(engine, LlamaCppEngine) else {},
            )
        )
        threading.Thread(target=_read, args=(spec.fd_in, engine), daemon=True).start()

    try:
        engine.run(ready)
    finally:
        engine.free()
    return EXIT_LOAD_FAILED if warm_up_rc else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
