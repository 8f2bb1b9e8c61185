"""registry.py: loading on first use under a memory budget, leases, least recently used out,
one load per model, failures recorded, idle models unloaded. The models are real backends that
need no weights: upstream models whose replica is a closed port (they start, hold nothing here
and close), and a local model whose file is not a GGUF (its load fails as any bad file does).
The registry is told their sizes through its `measure` hook."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wai.backends.base import Backend, EngineBusy, ModelLoadError
from wai.backends.local.backend import LocalBackend
from wai.backends.upstream.backend import UpstreamBackend
from wai.engines.llamacpp.config import LlamaCppConfig
from wai.engines.llamacpp.inthread import InThreadEngine
from wai.registry import Registry
from wai.settings import ModelConfig, Upstream

MiB = 2**20
SIZES = {"a": 60 * MiB, "b": 60 * MiB, "c": 30 * MiB}


def _upstream(name: str) -> ModelConfig:
    return ModelConfig(upstreams=[Upstream(url=f"http://127.0.0.1:9/{name}/v1")])


class Built:
    """Builds the registry's backends and counts the builds."""

    def __init__(self) -> None:
        self.builds: list[str] = []

    def __call__(self, name: str, config: ModelConfig) -> Backend:
        self.builds.append(name)
        if config.upstreams:
            return UpstreamBackend(name, config.upstreams, health_interval_s=3600)
        return LocalBackend(InThreadEngine(LlamaCppConfig(config.local_path, name)))


def _registry(
    tmp_path: Path, names: str = "abc", budget: int | None = 100 * MiB, **kw: float
) -> tuple[Registry, Built]:
    built = Built()
    models = {n: (_upstream(n), False, SIZES.get(n, 0)) for n in names}
    registry = Registry(
        models,
        built,
        budget=budget,
        measure=lambda b: SIZES.get(b.name, 0),
        load_wait_seconds=kw.get("load_wait_seconds", 30.0),
        idle_unload_seconds=kw.get("idle_unload_seconds", 0.0),
    )
    return registry, built


def test_a_model_loads_on_first_use_and_the_least_recently_used_makes_room(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        registry, built = _registry(tmp_path)
        await registry.start()
        try:
            await registry.acquire("a")
            registry.release("a")
            await registry.acquire("c")  # 60 + 30 fit in 100
            registry.release("c")
            await registry.acquire("b")  # 60 more: a (used longest ago) goes
            registry.release("b")
            report = registry.report()
            states = {n: m.state for n, m in report.models.items()}
            assert states == {"a": "unloaded", "b": "loaded", "c": "loaded"}
            assert report.memory_used_bytes == 90 * MiB
            assert report.models["a"].unloads == 1 and built.builds == ["a", "c", "b"]
        finally:
            await registry.close()

    asyncio.run(go())


def test_a_leased_model_is_never_unloaded_under_its_requests(tmp_path: Path) -> None:
    async def go() -> None:
        registry, _ = _registry(tmp_path, "ab", load_wait_seconds=0.3)
        await registry.start()
        try:
            await registry.acquire("a")  # held
            with pytest.raises(EngineBusy, match="memory budget"):
                await registry.acquire("b")
            assert registry.report().models["a"].state == "loaded"
            registry.release("a")  # the lease ends: now b can have the room
            await registry.acquire("b")
            registry.release("b")
            assert registry.report().models["a"].state == "unloaded"
        finally:
            await registry.close()

    asyncio.run(go())


def test_concurrent_first_requests_share_one_load(tmp_path: Path) -> None:
    async def go() -> None:
        registry, built = _registry(tmp_path, "a")
        await registry.start()
        try:
            backends = await asyncio.gather(*(registry.acquire("a") for _ in range(5)))
            assert len({id(b) for b in backends}) == 1 and built.builds == ["a"]
            assert registry.report().models["a"].leases == 5
            for _ in backends:
                registry.release("a")
            assert registry.report().models["a"].leases == 0
        finally:
            await registry.close()

    asyncio.run(go())


def test_a_failed_load_is_recorded_releases_its_room_and_is_not_tried_again(
    tmp_path: Path,
) -> None:
    async def go() -> None:
        bad = tmp_path / "bad.gguf"
        bad.write_bytes(b"not a gguf at all")
        built = Built()
        registry = Registry(
            {"bad": (ModelConfig(path=bad), False, 10 * MiB)}, built, budget=100 * MiB
        )
        await registry.start()
        try:
            for _ in range(2):
                with pytest.raises(ModelLoadError, match="not a GGUF"):
                    await registry.acquire("bad")
            report = registry.report()
            assert report.models["bad"].state == "failed" and report.memory_used_bytes == 0
            assert report.models["bad"].load_failures == 1 and built.builds == ["bad"]
            assert "not a GGUF" in registry.failures()["bad"]
        finally:
            await registry.close()

    asyncio.run(go())


def test_eager_models_load_at_start_and_idle_lazy_ones_are_unloaded(tmp_path: Path) -> None:
    async def go() -> None:
        built = Built()
        models = {"a": (_upstream("a"), True, 0), "b": (_upstream("b"), False, 0)}
        registry = Registry(models, built, idle_unload_seconds=0.3)
        await registry.start()
        try:
            assert registry.report().models["a"].state == "loaded"
            await registry.acquire("b")
            registry.release("b")
            for _ in range(50):
                if registry.report().models["b"].state == "unloaded":
                    break
                await asyncio.sleep(0.1)
            states = {n: m.state for n, m in registry.report().models.items()}
            assert states == {"a": "loaded", "b": "unloaded"}  # an eager model stays
        finally:
            await registry.close()

    asyncio.run(go())


def test_a_cancelled_load_leaves_the_model_unloaded_and_the_budget_free(tmp_path: Path) -> None:
    from wai.catalog import embedded_model_path

    config = ModelConfig(path=embedded_model_path())
    registry = Registry(
        {"m": (config, False, 50 * MiB)}, Built(), budget=100 * MiB, measure=lambda b: 50 * MiB
    )

    async def go() -> None:
        load = asyncio.create_task(registry.acquire("m"))
        while registry.entries["m"].state != "loading":
            await asyncio.sleep(0.001)
        load.cancel()  # e.g. LocalAi cancelling its pump, or a client gone during a lazy load
        with pytest.raises(asyncio.CancelledError):
            await load
        entry = registry.entries["m"]
        assert (entry.state, entry.backend, registry.used()) == ("unloaded", None, 0)
        backend = await registry.acquire("m")  # the next request loads it again
        assert registry.entries["m"].state == "loaded" and backend.failure is None
        registry.release("m")
        await registry.close()

    asyncio.run(go())


def test_an_unexpected_error_in_a_load_is_a_recorded_failure(tmp_path: Path) -> None:
    def broken(name: str, config: ModelConfig) -> Backend:
        raise RuntimeError("the factory broke")

    registry = Registry({"m": (_upstream("m"), False, 10 * MiB)}, broken, budget=100 * MiB)

    async def go() -> None:
        for _ in range(2):  # the second answers the recorded failure, loading nothing
            with pytest.raises(ModelLoadError, match="the factory broke"):
                await registry.acquire("m")
        entry = registry.entries["m"]
        assert (entry.state, entry.load_failures, registry.used()) == ("failed", 1, 0)

    asyncio.run(go())
