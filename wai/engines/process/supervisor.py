"""The server's side of an engine process, whatever its engine family.

A native crash (a kernel the CPU or compiler gets wrong, an abort in a GPU backend, the
kernel's OOM killer) cannot be caught in the process it happens in. So each loaded model runs
in an engine process of its own, as vLLM's V1 runs its EngineCore beside the API server, and a
`Supervisor`, in the server, keeps it:

- requests go down a pipe as frames; the engine's frames come back and are dealt by the
  family's `_deliver`;
- when the engine process dies, the requests it held end at once (`_lose`); the server and
  every other model go on;
- it is started again after a backoff; requests that arrive meanwhile wait in the backlog and
  are sent once it is up. Repeated crashes step down the family's safer plans (`skip_plans`);
  if even the safest crashes, the model is marked failed with the reason.

A family subclasses it with its worker module, what its worker is told (`_spec`), what its
ready frame carries (`_ready`), how its frames reach requests (`_deliver`) and how requests
end when the engine is lost (`_lose`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from wai.engines.process import frames
from wai.engines.process.child import child_env, describe_exit, module_command
from wai.engines.process.errors import ModelLoadError
from wai.engines.process.stats import EngineState

log = logging.getLogger("wai.engines")

STOP_TIMEOUT = 30.0  # seconds an engine gets to stop before it is killed

M = TypeVar("M")  # the family's engine -> server message union


@dataclass(slots=True)
class RestartPolicy:
    """When a crashed engine is started again, and with which settings.

    The first crash restarts the same plan after `base_delay` (a one-off: a killed process, an
    OOM kill). Every further crash in a row doubles the delay and steps one plan down the
    family's fallbacks. More than `max_crashes` in a row and the model is given up. An engine
    that served for `stable_after` seconds before it crashed starts the count again (the plan
    stays where it is: it was needed)."""

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


class Crashed(Exception):
    pass


@dataclass(slots=True)
class Child(Generic[M]):
    proc: subprocess.Popen[bytes]
    reader: asyncio.StreamReader
    writer: asyncio.WriteTransport
    decoder: msgspec.msgpack.Decoder[M]
    up_since: float = 0.0  # when it reported ready (0: not yet)

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def read(self) -> M | None:
        """The next frame, or None once the engine's end of the pipe has closed. A channel
        out of step (it cannot be trusted any more) kills the engine: it is then a crash."""
        try:
            header = await self.reader.readexactly(frames.HEADER_SIZE)
            body = await self.reader.readexactly(frames.frame_size(header))
            return self.decoder.decode(body)
        except asyncio.IncompleteReadError:
            return None
        except (ValueError, msgspec.DecodeError) as e:
            log.error("engine process %d: broken channel (%s); killing it", self.proc.pid, e)
            self.proc.kill()
            return None

    async def wait(self) -> int:
        self.writer.close()
        return await asyncio.to_thread(self.proc.wait)


class Supervisor(abc.ABC, Generic[M]):
    """One model's engine process, kept running. See the module's docstring."""

    worker_module: str  # `python -m` this, with the spec as JSON, is the engine process

    def __init__(
        self, name: str, decoder: msgspec.msgpack.Decoder[M], policy: RestartPolicy | None
    ) -> None:
        self.name = name
        self.policy = policy or RestartPolicy()
        self.restarts = 0
        self._decoder = decoder
        self._child: Child[M] | None = None
        # Requests for an engine that is (re)starting, sent once it is up: id -> frame.
        self._backlog: dict[int, bytes] = {}
        self._failure: str | None = None
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None

    # -- what a family provides --

    @abc.abstractmethod
    def _spec(self, skip_plans: int) -> dict[str, Any]:
        """What the worker is told, beyond its pipes and log level."""

    @abc.abstractmethod
    def _ready(self, msg: M) -> bool:
        """Take the engine's first frame if it says it is ready (True); otherwise False."""

    @abc.abstractmethod
    def _deliver(self, msg: M) -> None:
        """Deal one of the engine's frames to its requests."""

    @abc.abstractmethod
    def _held(self) -> list[int]:
        """The ids of the requests not yet finished."""

    @abc.abstractmethod
    def _lose(self, request_ids: list[int], message: str) -> None:
        """These requests end with an error that says `message`."""

    def _closed(self) -> None:
        """The model takes no more requests (it failed, or is closing)."""

    # -- state --

    @property
    def failure(self) -> str | None:
        return self._failure

    @property
    def pid(self) -> int | None:
        return self._child.proc.pid if self._child else None

    def state(self) -> EngineState:
        """What /healthz shows of the engine: up, restarting (after a crash), or failed."""
        return "failed" if self._failure else "up" if self._ready_child() else "restarting"

    def _ready_child(self) -> Child[M] | None:
        """The engine process, once it has reported ready."""
        child = self._child
        return child if child is not None and child.up_since > 0 else None

    def _send(self, rid: int, data: bytes) -> None:
        """A request's frame: to the engine, or to the backlog while it (re)starts."""
        if (child := self._ready_child()) is not None:
            child.send(data)
        else:  # sent once an engine is up; lost with nothing if one crashes while starting
            self._backlog[rid] = data

    # -- lifecycle --

    async def start(self) -> None:
        """Start the engine process; returns once it is ready. Raises ModelLoadError when the
        model cannot be loaded, or when the engine crashed while starting with every plan."""
        reasons: list[str] = []
        while True:
            try:
                await self._bring_up()
                break
            except Crashed as e:
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
        self._lose(self._held(), f"the model {self.name} is unavailable")

    async def _bring_up(self) -> None:
        """Start an engine process and wait for it to be ready. Raises ModelLoadError (the model
        cannot load: no point retrying) or Crashed."""
        child = await self._spawn(self.policy.skip_plans)
        self._child = child
        msg = await child.read()
        if msg is not None and self._ready(msg):
            child.up_since = time.monotonic()
            for data in self._backlog.values():
                child.send(data)
            self._backlog.clear()
            return
        rc = await child.wait()
        self._child = None
        if isinstance(msg, frames.Fatal):
            raise ModelLoadError(msg.message)
        raise Crashed(f"{describe_exit(rc)} while starting")

    async def _spawn(self, skip_plans: int) -> Child[M]:
        loop = asyncio.get_running_loop()
        to_engine_r, to_engine_w = os.pipe()
        from_engine_r, from_engine_w = os.pipe()
        spec = {
            **self._spec(skip_plans),
            "fd_in": to_engine_r,
            "fd_out": from_engine_w,
            "log_level": logging.getLogger("wai").getEffectiveLevel(),
        }
        try:
            proc = subprocess.Popen(
                module_command(self.worker_module, msgspec.json.encode(spec).decode()),
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
        reader = asyncio.StreamReader(limit=frames.MAX_FRAME)
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
        return Child(proc, reader, writer, self._decoder)

    async def _supervise(self) -> None:
        """Deal the engine's frames until it exits; then, unless closing, restart it."""
        while True:
            child = self._child
            assert child is not None
            while (msg := await child.read()) is not None:
                self._deliver(msg)
            # The engine is gone. From here on, new requests wait in the backlog.
            self._child = None
            held = self._held()
            rc = await child.wait()
            if self._closing:
                return
            up_for = time.monotonic() - child.up_since
            what = describe_exit(rc)
            self._lose(held, f"the engine running model {self.name} {what}; it is restarting")
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
            except Crashed as e:
                reasons.append(str(e))
                up_for = None
        return False

    def _give_up(self, reason: str) -> None:
        log.error("%s: giving up: %s", self.name, reason)
        self._failure = reason
        self._closed()
        waiting = list(self._backlog)
        self._backlog.clear()
        self._lose(waiting, f"the model {self.name} is unavailable: {reason}")

    async def close(self) -> None:
        """Stop the engine: what it still holds ends with an error; a process that does not
        stop within STOP_TIMEOUT is killed."""
        self._closing = True
        self._closed()
        child = self._child
        if child is not None:
            child.send(frames.frame(frames.Stop()))
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
        self._lose(self._held(), f"the model {self.name} stopped before this request finished")
