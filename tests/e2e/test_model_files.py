"""Model files are untrusted: hostile chat templates and broken GGUFs, built here with the gguf
package, cost their own ids, never the server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import LLAMA2, TOKEN, Server, start_server, stop_server
from wai.catalog import embedded_model_path

EVIL_ID = "@cf/mistral/mistral-7b-instruct-v0.1"
UNPARSABLE_ID = "@hf/thebloke/zephyr-7b-beta-awq"
TRUNCATED_ID = "@cf/meta/llama-3.1-8b-instruct"
JUNK_ID = "@cf/qwen/qwen1.5-0.5b-chat"
OUTSIDE_ID = "@cf/wai/outside-the-roots"
HUB_ID = "@cf/wai/not-in-the-hub-cache"


def with_template(src: Path, dst: Path, template: str) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gguf.scripts.gguf_new_metadata",
            "--force",
            "--chat-template",
            template,
            str(src),
            str(dst),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return dst


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("models")
    src = embedded_model_path()
    marker = tmp / "pwned"
    # CVE-2024-34359's shape: reach os through Python internals and run a command.
    escape = (
        "{{ self.__init__.__globals__.__builtins__.__import__('os')"
        ".system('touch " + str(marker) + "') }}"
        "{% for m in messages %}{{ m.content }}{% endfor %}"
    )
    evil = with_template(src, tmp / "evil.gguf", escape)
    unparsable = with_template(src, tmp / "unparsable.gguf", "{% for m in %}")
    truncated = tmp / "truncated.gguf"
    truncated.write_bytes(src.read_bytes()[: 4 << 20])
    junk = tmp / "junk.gguf"
    junk.write_bytes(b"\x00not a model\x00" * 1000)
    config = tmp / "wai.toml"
    config.write_text(f"""
model_roots = ["{tmp}", "{src.parent}"]
default_model = "{src}"
cache_dir = "{tmp / "cache"}"
[engine]
slots = 1
ctx_per_slot = 512
batch_tokens = 256
weights = "as-is"
[models.evil]
path = "{evil}"
serves = ["{EVIL_ID}"]
[models.unparsable]
path = "{unparsable}"
serves = ["{UNPARSABLE_ID}"]
[models.truncated]
path = "{truncated}"
serves = ["{TRUNCATED_ID}"]
load = "eager"
[models.junk]
path = "{junk}"
serves = ["{JUNK_ID}"]
load = "eager"
[models.outside]
path = "{tmp}/../elsewhere.gguf"
serves = ["{OUTSIDE_ID}"]
[models.hub]
path = "hf:nobody/nothing/x.gguf"
serves = ["{HUB_ID}"]
""")
    server = start_server(tmp, "--config", str(config), "--token", TOKEN)
    yield server, marker
    stop_server(server)


def _post(server: Server, model: str, body: dict[str, object]) -> requests.Response:
    return requests.post(server.run_url(model), headers=server.auth, json=body, timeout=60)


def test_the_server_runs_and_reports_refused_models(hostile: tuple[Server, Path]) -> None:
    server, _ = hostile
    health = requests.get(f"{server.url}/healthz", timeout=5).json()
    assert health["status"] == "ok"
    assert set(health["failed"]) == {"truncated", "junk", "outside", "hub"}
    assert "not a GGUF file" in health["failed"]["junk"]
    assert _post(server, LLAMA2, {"prompt": "Hi", "max_tokens": 2}).status_code == 200


def test_a_sandbox_escape_in_a_template_is_refused(hostile: tuple[Server, Path]) -> None:
    server, marker = hostile
    r = _post(server, EVIL_ID, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert err["code"] == 5006 and "refused" in err["message"]
    assert not marker.exists()
    # raw prompts never touch the template
    assert _post(server, EVIL_ID, {"prompt": "Hi", "raw": True, "max_tokens": 2}).status_code == 200


def test_a_template_that_does_not_parse_refuses_chat_only(hostile: tuple[Server, Path]) -> None:
    server, _ = hostile
    r = _post(server, UNPARSABLE_ID, {"messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 400 and "does not parse" in r.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (TRUNCATED_ID, "truncated or corrupt"),
        (JUNK_ID, "not a GGUF file"),
        (OUTSIDE_ID, "'..' is not allowed"),
        (HUB_ID, "not in the Hugging Face cache"),
    ],
)
def test_ids_of_unloadable_files_say_why(
    hostile: tuple[Server, Path], model: str, reason: str
) -> None:
    server, _ = hostile
    r = _post(server, model, {"prompt": "Hi"})
    assert r.status_code == 503
    err = r.json()["errors"][0]
    assert err["code"] == 3043 and reason in err["message"]


def test_public_answers_name_files_never_the_servers_paths(hostile: tuple[Server, Path]) -> None:
    server, marker = hostile
    folder = str(marker.parent)
    health = requests.get(f"{server.url}/healthz", timeout=5)  # public: no token
    ready = requests.get(f"{server.url}/readyz", timeout=5)
    errors = [_post(server, m, {"prompt": "Hi"}).text for m in (TRUNCATED_ID, JUNK_ID)]
    for text in (health.text, ready.text, *errors):
        assert folder not in text and "/elsewhere" not in text, text[:300]
    assert "junk.gguf" in health.text  # the file is still named
    assert folder in server.log.read_text()  # the log keeps the path
