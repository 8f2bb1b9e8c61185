"""The engine in its own supervised process (`engine.isolation: process`, the default).

A native crash in llama.cpp (a kernel the CPU or compiler gets wrong, an abort in a GPU backend,
the kernel's OOM killer) cannot be caught in the process it happens in. So each loaded model
runs in an engine process of its own (worker.py), as vLLM's V1 runs its EngineCore beside the
API server, and this backend, in the server, supervises it:

- requests and cancels go down a pipe; one frame per engine step comes back (wire.py);
- when the engine process dies, the requests it held end at once with a `Failed(crashed=True)`
  (a stream gets an error event, then [DONE]); the server and every other model go on;
- it is started again after a backoff; requests that arrive meanwhile wait for it (bounded by
  the same admission limits as always). Repeated crashes step down to the warm-up probe's safer
  settings (see params.fallbacks); if even the safest crashes, the model is marked failed with
  the reason and its ids answer 503 (3043).

Tokenizing and chat templates stay in the server, on a vocabulary-only load of the same GGUF
(no weights, no compute: nothing that runs a kernel); the engine detokenizes and applies stop
strings, since they decide when a sequence ends and frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import subprocess
import time
from dataclasses import dataclass

import msgspec

from wai.engine import wire
from wai.engine.admission import Admission, prompt_size
from wai.engine.child import child_env, describe_exit, module_command
from wai.engine.config import LlamaCppConfig
from wai.engine.gguf import LlamaTokenizer, load_tokenizer
from wai.engine.types import (
    EmbedRequest,
    EngineInfo,
    EngineState,
    EngineStats,
    Finished,
    Generation,
    ModelLoadError,
    TokenEngine,
    TokenEvent,
    TokenRequest,
    Usage,
)

log = logging.getLogger("wai.engine")

STOP_TIMEOUT = 30.0  # seconds an engine gets to stop before it is killed


@dataclass(slots=True)
class RestartPolicy:
    """When a crashed engine is started again, and with which settings.

    The first crash restarts the same plan after `base_delay` (a one-off: a killed process, an
    OOM kill). Every further crash in a row doubles the delay and steps one plan down the
    warm-up probe's fallbacks (extra buffers off, the file's own weights, the CPU alone). More
    than `max_crashes` in a row and the model is given up. An engine that served for
    `stable_after` seconds before it crashed starts the count again (the plan stays where it is:
    it was needed)."""

    base_delay: float = 0.5
    max_delay: float = 30.0
    stable_after: float = 60.0
    max_crashes: int = 5
    crashes: int = 0
    skip_plans: int = 0

    def after_crash(self, up_for: float | None) -> float | None:
        """The delay before the next start, or None to give up. `up_for`: how long the engine
        had been serving (None: it crashed while starting)."""
        if up_for is not None and up_for >= self.stable_after:
            self.crashes = 0
        self.crashes += 1
        if self.crashes > self.max_crashes:
            return None
        if self.crashes >= 2:
            self.skip_plans += 1
        return float(min(self.max_delay, self.base_delay * 2.0 ** (self.crashes - 1)))


class _Crashed(Exception):
    pass


@dataclass(slots=True)
class _Child:
    proc: subprocess.Popen[bytes]
    reader: asyncio.StreamReader
    writer: asyncio.WriteTransport
    up_since: float = 0.0  # when it reported ready (0: not yet)

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def read(self) -> wire.FromEngine | None:
        """The next frame, or None once the engine's end of the pipe has closed. A channel
        out of step (it cannot be trusted any more) kills the engine: it is then a crash."""
        try:
            header = await self.reader.readexactly(wire.HEADER_SIZE)
            body = await self.reader.readexactly(wire.frame_size(header))
            msg: wire.FromEngine = wire.from_engine.decode(body)
            return msg
        except asyncio.IncompleteReadError:
            return None
        except (ValueError, msgspec.DecodeError) as e:
            log.error("engine process %d: broken channel (%s); killing it", self.proc.pid, e)
            self.proc.kill()
            return None

    async def wait(self) -> int:
        self.writer.close()
        return await asyncio.to_thread(self.proc.wait)


class ProcessEngine(TokenEngine):
    tokenizer: LlamaTokenizer

    def __init__(self, config: LlamaCppConfig, policy: RestartPolicy | None = None) -> None:
        self.config = config
        self.name = config.name
        self.policy = policy or RestartPolicy()
        self.n_ctx_seq = config.n_ctx_seq
        self.chat_template: str | None = None
        self.metadata: dict[str, str] = {}
        self._info: EngineInfo | None = None
        self.kv_bytes = 0
        self.weights_bytes = 0
        self.restarts = 0
        # decode call times each plan's first process measured (by plans skipped), for a
        # restart to start with instead of measuring again (LlamaCppEngine.step_costs)
        self._step_costs: dict[int, dict[int, float]] = {}
        self._admission = Admission(config.name, config.n_slots, config.max_waiting)
        self._child: _Child | None = None
        # Requests for an engine that is (re)starting, sent once it is up: id -> frame.
        self._backlog: dict[int, bytes] = {}
        self._failure: str | None = None
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def info(self) -> EngineInfo | None:
        if self._info is None:
            return None
        state: EngineState = (
            "failed" if self._failure else "up" if self._ready_child() else "restarting"
        )
        return dataclasses.replace(
            self._info,
            isolation="process",
            state=state,
            pid=self._child.proc.pid if self._child else None,
            restarts=self.restarts,
        )

    @property
    def step_costs(self) -> dict[int, float]:
        """Decode call times by rows the running plan's engine started with (empty: none)."""
        return dict(self._step_costs.get(self.policy.skip_plans, {}))

    @property
    def failure(self) -> str | None:
        return self._failure

    # -- lifecycle --

    async def start(self) -> None:
        """Load the vocabulary here and the model in a new engine process; returns once it
        has warmed up. Raises ModelLoadError when the file cannot be loaded, or when the engine
        crashed while starting with every setting (as the restart policy steps down)."""
        self.tokenizer = await asyncio.to_thread(load_tokenizer, self.config.path)
        reasons: list[str] = []
        while True:
            try:
                await self._bring_up()
                break
            except _Crashed as e:
                reasons.append(str(e))
                delay = self.policy.after_crash(None)
                if delay is None:
                    raise ModelLoadError(
                        "the engine crashed while starting, with every setting tried: "
                        + "; ".join(reasons)
                    ) from None
                log.warning("%s: engine %s; starting again in %.1f s", self.name, e, delay)
                await asyncio.sleep(delay)
        self._supervisor = asyncio.create_task(self._supervise(), name=f"supervise-{self.name}")
        self._supervisor.add_done_callback(self._supervisor_ended)

    def _supervisor_ended(self, task: asyncio.Task[None]) -> None:
        """A supervisor that died of a bug must not leave requests waiting forever."""
        if task.cancelled() or task.exception() is None or self._closing:
            return
        log.error("%s: engine supervisor failed", self.name, exc_info=task.exception())
        self._give_up(f"the engine supervisor failed: {task.exception()!r}")
        if self._child is not None:
            self._child.proc.kill()
        self._admission.lose(self._admission.open_ids(), f"the model {self.name} is unavailable")

    async def _bring_up(self) -> None:
        """Start an engine process and wait for it to be ready. Raises ModelLoadError (the model
        cannot load: no point retrying) or _Crashed."""
        child = await self._spawn(self.policy.skip_plans)
        self._child = child
        msg = await child.read()
        if isinstance(msg, wire.Ready):
            self.n_ctx_seq = msg.n_ctx_seq
            self.chat_template = msg.chat_template
            self.metadata = msg.metadata
            self._info = msg.info
            self.kv_bytes = msg.kv_bytes
            self.weights_bytes = msg.weights_bytes
            if msg.step_costs:
                self._step_costs[self.policy.skip_plans] = msg.step_costs
            child.up_since = time.monotonic()
            for data in self._backlog.values():
                child.send(data)
            self._backlog.clear()
            return
        rc = await child.wait()
        self._child = None
        if isinstance(msg, wire.Fatal):
            raise ModelLoadError(msg.message)
        raise _Crashed(f"{describe_exit(rc)} while starting")

    async def _spawn(self, skip_plans: int) -> _Child:
        loop = asyncio.get_running_loop()
        to_engine_r, to_engine_w = os.pipe()
        from_engine_r, from_engine_w = os.pipe()
        spec = {
            "config": self.config.as_dict(),
            "skip_plans": skip_plans,
            "fd_in": to_engine_r,
            "fd_out": from_engine_w,
            "log_level": logging.getLogger("wai").getEffectiveLevel(),
            "step_costs": self._step_costs.get(skip_plans, {}),
        }
        try:
            proc = subprocess.Popen(
                module_command("wai.engine.worker", msgspec.json.encode(spec).decode()),
                pass_fds=(to_engine_r, from_engine_w),
                stdin=subprocess.DEVNULL,
                env=child_env(),
                # Out of the terminal's process group (Ctrl-C is the server's to handle), but in
                # its session: with the kernel's autogroup scheduling a new session is a new
                # group that gets no more CPU than the whole server, and measured 17% slower
                # under load on 2 cores.
                process_group=0,
            )
        except BaseException:
            os.close(to_engine_w)
            os.close(from_engine_r)
            raise
        finally:
            # the child's ends: closed here, so that the child's death reads as end-of-file
            with contextlib.suppress(OSError):
                os.close(to_engine_r)
            with contextlib.suppress(OSError):
                os.close(from_engine_w)
        reader = asyncio.StreamReader(limit=wire.MAX_FRAME)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(from_engine_r, "rb", 0)
        )
        writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(to_engine_w, "wb", 0))
        log.info(
            "%s: engine process %d started (safer plans skipped: %d)",
            self.name,
            proc.pid,
            skip_plans,
        )
        return _Child(proc, reader, writer)

    async def _supervise(self) -> None:
        """Deal the engine's frames until it exits; then, unless closing, restart it."""
        while True:
            child = self._child
            assert child is not None
            while (msg := await child.read()) is not None:
                if isinstance(msg, wire.Step):
                    self._admission.deliver(map(wire.msg_event, msg.events), msg.counters)
            # The engine is gone. From here on, new requests wait in the backlog.
            self._child = None
            held = self._admission.open_ids()
            rc = await child.wait()
            if self._closing:
                return
            up_for = time.monotonic() - child.up_since
            what = describe_exit(rc)
            self._admission.lose(
                held, f"the engine running model {self.name} {what}; it is restarting"
            )
            log.error(
                "%s: engine process %d %s after %.0f s, %d requests lost",
                self.name,
                child.proc.pid,
                what,
                up_for,
                len(held),
            )
            if not await self._restart(up_for, f"{what} after {up_for:.0f} s of serving"):
                return

    async def _restart(self, up_for: float | None, crash: str) -> bool:
        reasons = [crash]
        while not self._closing:
            delay = self.policy.after_crash(up_for)
            if delay is None:
                self._give_up(
                    "the engine kept crashing, with every setting tried: " + "; ".join(reasons)
                )
                return False
            await asyncio.sleep(delay)
            if self._closing:
                return False
            self.restarts += 1
            try:
                await self._bring_up()
                log.info("%s: engine restarted (restart %d)", self.name, self.restarts)
                return True
            except ModelLoadError as e:
                self._give_up(str(e))
                return False
            except _Crashed as e:
                reasons.append(str(e))
                up_for = None
        return False

    def _give_up(self, reason: str) -> None:
        log.error("%s: giving up: %s", self.name, reason)
        self._failure = reason
        self._admission.closed = True
        waiting = list(self._backlog)
        self._backlog.clear()
        self._admission.lose(waiting, f"the model {self.name} is unavailable: {reason}")

    # -- requests --

    def submit(self, request: TokenRequest | EmbedRequest) -> Generation[TokenEvent]:
        rid = self._admission.open(request, self.n_ctx_seq)
        data = wire.submit(request)
        if (child := self._ready_child()) is not None:
            child.send(data)
        else:  # sent once an engine is up; lost with nothing if one crashes while starting
            self._backlog[rid] = data
        n_prompt = prompt_size(request)
        return self._admission.generation(rid, lambda: self._cancel(rid, n_prompt))

    def _cancel(self, rid: int, n_prompt: int) -> None:
        if self._backlog.pop(rid, None) is not None:  # never reached an engine
            self._admission.deliver([(rid, Finished("cancelled", Usage(n_prompt, 0)))], None)
        elif (child := self._ready_child()) is not None:
            child.send(wire.frame(wire.Cancel(rid)))

    def _ready_child(self) -> _Child | None:
        """The engine process, once it has reported ready."""
        child = self._child
        return child if child is not None and child.up_since > 0 else None

    def stats(self) -> EngineStats:
        return self._admission.stats(self.kv_bytes, self.restarts)

    def memory_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes

    async def close(self) -> None:
        """Stop the engine: what it still holds ends with an error event; a process that does
        not stop within STOP_TIMEOUT is killed."""
        self._closing = True
        self._admission.closed = True
        child = self._child
        if child is not None:
            child.send(wire.frame(wire.Stop()))
            try:
                await asyncio.wait_for(asyncio.to_thread(child.proc.wait), STOP_TIMEOUT)
            except TimeoutError:
                log.warning(
                    "%s: engine did not stop in %.0f s: killing it", self.name, STOP_TIMEOUT
                )
                child.proc.kill()
        if self._supervisor is not None:
            if child is None:
                self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if child is not None:
            await child.wait()
        self._child = None
        leftover = self._admission.open_ids()
        self._admission.lose(
            leftover, f"the model {self.name} stopped before this request finished"
        )
