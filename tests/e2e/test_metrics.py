"""GET /metrics against the running server, scraped and parsed with prometheus-client's own
parser: behind the token, and the figures move exactly as requests are served."""

from __future__ import annotations

from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TOKEN, Server, start_server, stop_server
from wai.catalog import EMBEDDED_NAME

REST_ROUTE = "/client/v4/accounts/{account_id}/ai/run/{model:path}"


def _scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = requests.get(f"{server.url}/metrics", headers=server.auth, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _get(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_the_token(server: Server) -> None:
    assert requests.get(f"{server.url}/metrics", timeout=5).status_code == 400  # as Cloudflare
    wrong = {"Authorization": "Bearer nope"}
    assert requests.get(f"{server.url}/metrics", headers=wrong, timeout=5).status_code == 401


def test_metrics_move_as_requests_are_served(server: Server) -> None:
    model = {"model": EMBEDDED_NAME}
    before = _scrape(server)
    usage = []
    for stream in (False, True):
        body = {"prompt": "Count to ten", "max_tokens": 12, "temperature": 0, "stream": stream}
        r = requests.post(server.run_url(), headers=server.auth, json=body, timeout=60)
        assert r.status_code == 200
        if not stream:
            usage.append(r.json()["result"]["usage"])
    bad = requests.post(server.run_url(), headers=server.auth, json={"prompt": 7}, timeout=10)
    assert bad.status_code == 400
    after = _scrape(server)

    def moved(name: str, **labels: str) -> float:
        return _get(after, name, **labels) - _get(before, name, **labels)

    ok = {"route": REST_ROUTE, "model": EMBEDDED_NAME, "status": "200"}
    assert moved("wai_requests_total", **ok) == 2
    assert moved("wai_requests_total", route=REST_ROUTE, model="", status="400") == 1
    assert moved("wai_generation_tokens_total", **model) == 24  # 12 each, greedy, no EOS yet
    assert moved("wai_prompt_tokens_total", **model) == 2 * usage[0]["prompt_tokens"]
    for histogram in (
        "wai_time_to_first_token_seconds",
        "wai_time_per_output_token_seconds",
        "wai_queue_wait_seconds",
        "wai_request_duration_seconds",
    ):
        assert moved(f"{histogram}_count", **model) == 2, histogram
        assert moved(f"{histogram}_sum", **model) >= 0
    ttft = moved("wai_time_to_first_token_seconds_sum", **model)
    e2e = moved("wai_request_duration_seconds_sum", **model)
    assert 0 < ttft < e2e
    # read at scrape time from the engine and the registry
    stats = server.stats()
    assert _get(after, "wai_slots", **model) == stats["slots_total"]
    assert _get(after, "wai_running_sequences", **model) == 0
    assert _get(after, "wai_queue_depth", **model) == 0
    assert _get(after, "wai_kv_cache_bytes", **model) == stats["kv_cache_bytes"] > 0
    assert _get(after, "wai_model_loaded", **model) == 1
    assert _get(after, "wai_model_loads_total", **model) == 1
    assert _get(after, "wai_engine_restarts_total", **model) == 0


def test_metrics_can_be_public(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--token", TOKEN, env={"WAI_METRICS_PUBLIC": "true"})
    try:
        r = requests.get(f"{server.url}/metrics", timeout=5)
        assert r.status_code == 200 and "wai_model_loaded" in r.text
        # everything else still needs the token
        assert requests.get(f"{server.url}/wai/v1/stats", timeout=5).status_code == 400
    finally:
        stop_server(server)
