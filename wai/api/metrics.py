"""GET /metrics: Prometheus text format (prometheus-client).

Three sources, none of them on the engine's step loop:
- per HTTP request, the access middleware (access.py) counts requests by route template, local
  model and status code (bounded labels: never the model id a client typed);
- per generation (access.track hands it over), a callback at its end observes time to first
  token, time per output token, the wait for a slot and the end-to-end time, and adds its
  tokens;
- at scrape time, a collector reads the engines' and the registry's own counters (queue depth,
  running sequences, KV cache, restarts, loads, unloads, load failures).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from wai.backends.base import Event, Finished, Generation, UpstreamReport
from wai.queue import BatchQueue
from wai.runtime import Runtime, Served

# Buckets wide enough for a 2-core CPU (seconds to a first token under load) and a GPU (tens
# of milliseconds).
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1)
QUEUE_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
E2E_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self, runtime: Runtime, queue: BatchQueue | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "wai_requests", "HTTP requests", ["route", "model", "status"], registry=r
        )
        self.ttft = Histogram(
            "wai_time_to_first_token_seconds",
            "From submission to the first token",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "wai_time_per_output_token_seconds",
            "Between output tokens, after the first",
            ["model"],
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.queue = Histogram(
            "wai_queue_wait_seconds",
            "Waiting for a slot in the engine",
            ["model"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "wai_request_duration_seconds",
            "From submission to the last token",
            ["model"],
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("wai_prompt_tokens", "Prompt tokens", ["model"], registry=r)
        self.cached_tokens = Counter(
            "wai_cached_prompt_tokens", "Prompt tokens served from the prefix cache", ["model"],
            registry=r,
        )  # fmt: skip
        self.generation_tokens = Counter(
            "wai_generation_tokens", "Generated tokens", ["model"], registry=r
        )
        self.audio_seconds = Counter(
            "wai_audio_seconds", "Seconds of audio transcribed or spoken", ["model"], registry=r
        )
        self.characters = Counter(
            "wai_spoken_characters", "Characters of text spoken", ["model"], registry=r
        )
        r.register(_EngineCollector(runtime))
        if queue is not None:
            r.register(_QueueCollector(queue))

    def observe(self, served: Served, generation: Generation[Event]) -> None:
        """Watch one generation; its figures are recorded when it ends."""
        model = served.model_name
        generation.add_done_callback(lambda: self._record(model, generation))

    def _record(self, model: str, g: Generation[Event]) -> None:
        final = g.final
        if not isinstance(final, Finished):
            return  # cancelled or failed: counted by route and status only
        end = g.ended_at or time.monotonic()
        self.e2e.labels(model).observe(end - g.submitted_at)
        self.queue.labels(model).observe(final.queued_seconds)
        if g.first_token_at is not None:
            self.ttft.labels(model).observe(g.first_token_at - g.submitted_at)
            n = final.usage.completion_tokens
            if n > 1:
                self.tpot.labels(model).observe((end - g.first_token_at) / (n - 1))
        u = final.usage
        self.prompt_tokens.labels(model).inc(u.prompt_tokens)
        self.cached_tokens.labels(model).inc(u.cached_tokens)
        self.generation_tokens.labels(model).inc(u.completion_tokens)
        if u.audio_seconds:
            self.audio_seconds.labels(model).inc(u.audio_seconds)
        if u.characters:
            self.characters.labels(model).inc(u.characters)

    def response(self) -> Response:
        return Response(
            generate_latest(self.registry), headers={"content-type": CONTENT_TYPE_LATEST}
        )


class _EngineCollector(Collector):
    """Engine and registry counters, read at scrape time."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Any]:
        rt = self.runtime

        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=["model"])

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=["model"])

        gauges = {
            "queue": gauge("wai_queue_depth", "Requests waiting for a slot"),
            "running": gauge("wai_running_sequences", "Sequences in a slot"),
            "slots": gauge("wai_slots", "Slots (concurrent sequences)"),
            "kv": gauge("wai_kv_cache_bytes", "KV cache allocated"),
            "cache_bytes": gauge("wai_prompt_cache_bytes", "Prompt prefixes kept in host RAM"),
            "cache_entries": gauge("wai_prompt_cache_entries", "Prompt prefixes in host RAM"),
            "loaded": gauge("wai_model_loaded", "1 while the model is loaded"),
        }
        counters = {
            "restarts": counter("wai_engine_restarts", "Engines restarted after a crash"),
            "loads": counter("wai_model_loads", "Model loads"),
            "unloads": counter("wai_model_unloads", "Model unloads"),
            "failures": counter("wai_model_load_failures", "Model loads that failed"),
            "misses": counter(
                "wai_prompt_cache_misses", "Requests that reused no cached prompt tokens"
            ),
        }
        hits = CounterMetricFamily(
            "wai_prompt_cache_hits",
            "Requests that reused cached prompt tokens, by where they were (slot: the "
            "request's own slot, copy: another slot's, ram: the host RAM cache)",
            labels=["model", "source"],
        )
        for name, s in rt.stats().items():
            gauges["queue"].add_metric([name], s.waiting)
            gauges["running"].add_metric([name], s.slots_busy)
            gauges["slots"].add_metric([name], s.slots_total)
            gauges["kv"].add_metric([name], s.kv_cache_bytes)
            counters["restarts"].add_metric([name], s.restarts)
            pc = s.prompt_cache
            gauges["cache_bytes"].add_metric([name], pc.bytes)
            gauges["cache_entries"].add_metric([name], pc.entries)
            counters["misses"].add_metric([name], pc.misses)
            for source, n in (("slot", pc.hits_slot), ("copy", pc.hits_copy), ("ram", pc.hits_ram)):
                hits.add_metric([name, source], n)
        models = rt.registry.report().models if rt.registry is not None else {}
        for name, m in models.items():
            gauges["loaded"].add_metric([name], 1 if m.state == "loaded" else 0)
            counters["loads"].add_metric([name], m.loads)
            counters["unloads"].add_metric([name], m.unloads)
            counters["failures"].add_metric([name], m.load_failures)
        yield from gauges.values()
        yield from counters.values()
        yield hits
        yield from self._speculation()
        yield from self._replicas()

    def _speculation(self) -> Iterator[Any]:
        """Speculative decoding per model: drafted tokens verified, and those accepted."""
        drafted = CounterMetricFamily(
            "wai_speculative_drafted_tokens",
            "Drafted tokens verified (speculative decoding)",
            labels=["model"],
        )
        accepted = CounterMetricFamily(
            "wai_speculative_accepted_tokens", "Drafted tokens the model accepted", labels=["model"]
        )
        for name, s in self.runtime.stats().items():
            drafted.add_metric([name], s.drafted_tokens)
            accepted.add_metric([name], s.accepted_tokens)
        yield drafted
        yield accepted

    def _replicas(self) -> Iterator[Any]:
        """Each upstream replica: healthy, in flight, requests, errors, ejections."""
        labels = ["model", "replica"]
        healthy = GaugeMetricFamily(
            "wai_upstream_healthy", "1 while a replica is admitted", labels=labels
        )
        in_flight = GaugeMetricFamily(
            "wai_upstream_in_flight", "Requests on a replica", labels=labels
        )
        requests = CounterMetricFamily(
            "wai_upstream_requests", "Requests sent to a replica", labels=labels
        )
        errors = CounterMetricFamily(
            "wai_upstream_errors", "Requests a replica failed", labels=labels
        )
        ejections = CounterMetricFamily(
            "wai_upstream_ejections", "Times a replica was ejected", labels=labels
        )
        for name, backend in self.runtime.backends.items():
            report = backend.report()
            if not isinstance(report, UpstreamReport):
                continue
            for r in report.replicas:
                key = [name, r.replica]
                healthy.add_metric(key, 1 if r.healthy else 0)
                in_flight.add_metric(key, r.outstanding)
                requests.add_metric(key, r.requests)
                errors.add_metric(key, r.errors)
                ejections.add_metric(key, r.ejections)
        yield from (healthy, in_flight, requests, errors, ejections)


class _QueueCollector(Collector):
    """The batch queue: its items by state (from the database, at scrape time), the oldest
    queued item's age, and how the runs of items ended."""

    def __init__(self, queue: BatchQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Any]:
        counts = self.queue.stats()
        items = GaugeMetricFamily(
            "wai_batch_items", "Items of queued batches kept now, by state", labels=["state"]
        )
        for state in ("queued", "running", "finished", "failed"):
            items.add_metric([state], counts[state])
        yield items
        yield GaugeMetricFamily(
            "wai_batch_oldest_queued_seconds",
            "Age of the oldest batch with an item still queued",
            value=counts["oldest_age"],
        )
        runs = CounterMetricFamily(
            "wai_batch_item_runs",
            "Runs of queued items by how they ended (ok, failed, preempted, lost)",
            labels=["model", "outcome"],
        )
        for (model, outcome), n in sorted(self.queue.runner.outcomes.items()):
            runs.add_metric([model, outcome], n)
        yield runs


async def metrics_route(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    return metrics.response()
