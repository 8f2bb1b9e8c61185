"""The playground page in a real browser: Debian's headless Chromium, driven by Selenium,
against a real `wai serve`. It streams an answer, switches model ids, shows an error, and its curl
snippet, run as it is, answers the same."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import LLAMA2, TOKEN, Server, start_server, stop_server
from tests.speech_audio import recovered
from wai.api import playground

LLAMA3 = "@cf/meta/llama-3.1-8b-instruct"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "make test installs chromium and chromium-driver (Debian)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console
    b = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    yield b
    b.quit()


def _open(browser: WebDriver, server: Server, token: str | None) -> None:
    browser.get(f"{server.url}/")
    if token is not None:
        field = browser.find_element(By.ID, "token")
        field.clear()
        field.send_keys(token + "\t")  # leaving the field saves it and loads the models
    WebDriverWait(browser, 20).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#model option")) > 10
    )


def _set(browser: WebDriver, field: str, value: str) -> None:
    el = browser.find_element(By.ID, field)
    el.clear()
    el.send_keys(value)


def _sse_text(raw: str) -> str:
    events = [json.loads(x[6:]) for x in raw.split("\n") if x.startswith("data: {")]
    return "".join(e.get("response", "") for e in events)


def test_chat_streams_and_the_curl_snippet_answers_the_same(
    browser: WebDriver, server: Server
) -> None:
    _open(browser, server, TOKEN)
    Select(browser.find_element(By.ID, "model")).select_by_value(LLAMA2)
    _set(browser, "temperature", "0")
    _set(browser, "seed", "7")
    _set(browser, "max_tokens", "48")
    _set(browser, "input", "Tell me a short story about a fox.")

    # the Copy button puts the snippet on the clipboard; that is what runs
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": server.url},
    )
    browser.find_element(By.ID, "copy").click()
    snippet = browser.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], (e) => arguments[0]('error: ' + e))"
    )
    assert snippet == browser.find_element(By.ID, "snippet").text
    assert snippet.startswith("curl -N ") and f"/ai/run/{LLAMA2}" in snippet
    assert "$WAI_TOKEN" in snippet and TOKEN not in snippet  # the token stays out of code
    ran = subprocess.run(
        ["bash", "-c", snippet],
        env={**os.environ, "WAI_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    expected = _sse_text(ran.stdout)
    assert expected

    browser.find_element(By.ID, "send").click()
    bubble = browser.find_element(By.CSS_SELECTOR, "#log li.assistant")
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while "usage" not in browser.find_element(By.ID, "stats").text:
        assert time.monotonic() < deadline, "no answer"
        seen.add(len(bubble.text))
        time.sleep(0.01)
    assert len(seen - {0, len(expected)}) >= 1, seen  # text appeared in at least two steps
    assert bubble.text == expected.strip() or bubble.text == expected
    stats = browser.find_element(By.ID, "stats").text
    assert re.search(r"TTFT \d+ ms", stats) and "tok/s" in stats, stats
    assert re.search(r"usage \d+ prompt \+ 48 completion tokens", stats), stats
    # the next request carries the conversation
    assert "Tell me a short story about a fox." in browser.find_element(By.ID, "snippet").text


def test_switching_model_and_code_tabs(browser: WebDriver, server: Server) -> None:
    _open(browser, server, TOKEN)
    Select(browser.find_element(By.ID, "model")).select_by_value(LLAMA3)
    assert LLAMA3 in browser.find_element(By.ID, "snippet").text
    served = browser.find_element(By.ID, "served").text
    # the stand-in says so, and names the command that fetches the id's real weights
    assert "answered here by" in served and "a stand-in" in served
    assert f"wai pull {LLAMA3}" in served
    for tab, marker in (
        ("cloudflare", "client.ai.run("),
        ("requests", "requests.post("),
        ("worker", "env.AI.run("),
    ):
        browser.find_element(By.CSS_SELECTOR, f'.tabs button[data-tab="{tab}"]').click()
        text = browser.find_element(By.ID, "snippet").text
        assert marker in text and LLAMA3 in text, text


def test_an_error_shows_the_cloudflare_envelope(browser: WebDriver, server: Server) -> None:
    _open(browser, server, TOKEN)
    _set(browser, "max_tokens", "100000")  # over the server's cap
    _set(browser, "input", "hi")
    browser.find_element(By.ID, "send").click()
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 20).until(lambda b: error.is_displayed())
    assert "HTTP 400" in error.text and '"code": 5006' in error.text, error.text
    assert "max_tokens" in error.text


def test_a_wrong_token_is_shown_and_a_server_without_tokens_needs_none(
    browser: WebDriver, server: Server, tmp_path: Path
) -> None:
    browser.get(f"{server.url}/")
    field = browser.find_element(By.ID, "token")
    field.clear()
    field.send_keys("not-the-token\t")
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 20).until(lambda b: "HTTP 401" in error.text)
    browser.execute_script("sessionStorage.clear()")
    open_server = start_server(tmp_path)
    try:
        _open(browser, open_server, None)
    finally:
        stop_server(open_server)


def test_a_server_with_tokens_asks_for_one_and_the_console_stays_clean(
    browser: WebDriver, server: Server
) -> None:
    browser.get(f"{server.url}/")
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{server.url}/")
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 20).until(lambda b: "needs a token" in error.text)
    assert "Token field" in error.text and "9106" not in error.text
    browser.get_log("browser")  # what came before the token: read and dropped
    field = browser.find_element(By.ID, "token")
    field.send_keys(TOKEN + "\t")
    WebDriverWait(browser, 20).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#model option")) > 10
    )
    time.sleep(0.5)  # the embedding panel's list too
    assert not error.is_displayed()
    problems = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert problems == [], problems
    icon = requests.get(f"{server.url}/favicon.ico", timeout=5)  # public, as the page's assets
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"


def test_the_page_is_served_strictly(server: Server) -> None:
    for path in sorted(playground.PATHS):
        r = requests.get(server.url + path, timeout=5)  # no token needed
        assert r.status_code == 200
        assert r.headers["content-security-policy"] == playground.CSP
        assert r.headers["x-content-type-options"] == "nosniff"
    html = requests.get(f"{server.url}/playground", timeout=5)
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    # no inline script or handler, nothing from elsewhere
    assert re.findall(r"<script[^>]*>", html.text) == [
        '<script type="module" src="/playground/playground.js">'
    ]
    assert not re.search(r"\son\w+=", html.text) and "http" not in html.text
    # the Host guard (DNS rebinding) covers the page too
    foreign = requests.get(f"{server.url}/", headers={"Host": "evil.example"}, timeout=5)
    assert foreign.status_code == 400 and foreign.json()["errors"][0]["code"] == 6003


def test_the_embeddings_panel_shows_a_similarity_heat_map(
    browser: WebDriver, server: Server
) -> None:
    _open(browser, server, TOKEN)
    WebDriverWait(browser, 20).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#embed-model option")) >= 7
    )
    browser.find_element(By.CSS_SELECTOR, "#embed-panel summary").click()
    Select(browser.find_element(By.ID, "embed-model")).select_by_value("@cf/baai/bge-small-en-v1.5")
    browser.find_element(By.ID, "embed").click()
    WebDriverWait(browser, 30).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#heatmap td.sim")) == 9
    )
    cells = [float(c.text) for c in browser.find_elements(By.CSS_SELECTOR, "#heatmap td.sim")]
    matrix = [cells[i * 3 : i * 3 + 3] for i in range(3)]
    assert all(matrix[i][i] == 1.0 for i in range(3))
    # the default texts: two about a cat on a mat, one about stocks
    assert matrix[0][1] > matrix[0][2] and matrix[0][1] > matrix[1][2]
    assert "3 \u00d7 384 by all-MiniLM-L6-v2" in browser.find_element(By.ID, "embed-stats").text
    if os.environ.get("WAI_SCREENSHOTS"):
        browser.save_screenshot(os.environ["WAI_SCREENSHOTS"] + "/playground-embeddings.png")


def test_the_speech_panel_speaks_then_transcribes_with_word_timings(
    browser: WebDriver, server: Server
) -> None:
    _open(browser, server, TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#speech-panel summary").click()
    said = "Please remember to water the garden every morning before work."
    text = browser.find_element(By.ID, "speak-text")
    text.clear()
    text.send_keys(said)
    browser.find_element(By.ID, "speak").click()
    WebDriverWait(browser, 60).until(
        lambda b: b.find_element(By.ID, "speech-audio").get_attribute("src").startswith("blob:")
    )
    assert "audio/mpeg by en_US-joe-medium" in browser.find_element(By.ID, "speak-stats").text
    browser.find_element(By.ID, "hear-back").click()
    WebDriverWait(browser, 120).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#words tr.word")) >= 8
    )
    heard = browser.find_element(By.ID, "transcript").text
    assert (
        recovered("Please remember to water the garden every morning before work.", heard) >= 0.75
    )
    starts = [
        float(row.find_elements(By.TAG_NAME, "td")[1].text)
        for row in browser.find_elements(By.CSS_SELECTOR, "#words tr.word")
    ]
    assert starts == sorted(starts)
    assert browser.find_element(By.ID, "vtt").text.startswith("WEBVTT")
    blocked = [
        e
        for e in browser.get_log("browser")
        if "Content Security Policy" in e["message"] or "blob:" in e["message"]
    ]
    assert not blocked, blocked  # the CSP lets the audio play from its blob: URL
    if os.environ.get("WAI_SCREENSHOTS"):
        browser.save_screenshot(os.environ["WAI_SCREENSHOTS"] + "/playground-speech.png")


def test_the_text_panel_classifies_summarizes_and_shows_the_pull_for_translation(
    browser: WebDriver, server: Server
) -> None:
    _open(browser, server, TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#text-panel summary").click()
    browser.find_element(By.ID, "classify").click()
    WebDriverWait(browser, 60).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#labels tr.label")) == 2
    )
    first = browser.find_elements(By.CSS_SELECTOR, "#labels tr.label")[0].text
    assert first.startswith("POSITIVE")
    assert "zero-shot" in browser.find_element(By.ID, "classify-stats").text
    browser.find_element(By.ID, "summarize").click()
    WebDriverWait(browser, 60).until(lambda b: "library" in b.find_element(By.ID, "summary").text)
    assert "bakery" not in browser.find_element(By.ID, "summary").text
    Select(browser.find_element(By.ID, "target-lang")).select_by_visible_text("German")
    browser.find_element(By.ID, "translate").click()
    WebDriverWait(browser, 30).until(
        lambda b: "wai pull @cf/meta/m2m100-1.2b" in b.find_element(By.ID, "translation").text
    )
    assert "5007" in browser.find_element(By.ID, "translation").text
    if os.environ.get("WAI_SCREENSHOTS"):
        browser.save_screenshot(os.environ["WAI_SCREENSHOTS"] + "/playground-text.png")
