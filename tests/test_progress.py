"""engine/progress.py: a bar on a terminal, a log line per 10% otherwise; model loads report."""

from __future__ import annotations

import io
import logging

import llama_cpp as L
import pytest

from wai.catalog import embedded_model_path
from wai.engines.llamacpp.gguf import load_model
from wai.progress import Progress


def test_without_a_terminal_a_line_per_ten_percent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wai.engines")
    p = Progress("loading x", stream=io.StringIO(), tty=False)
    for i in range(101):
        p.update(i / 100)
    p.done()
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(":")[1].split("%")[0].strip() for line in lines] == [
        str(n) for n in range(0, 101, 10)
    ]


def test_on_a_terminal_a_bar_redrawn_in_place() -> None:
    out = io.StringIO()
    p = Progress("loading x", stream=out, tty=True)
    p.update(0.5)
    p.update(0.5)  # unchanged: not redrawn
    p.done()
    text = out.getvalue()
    assert text.count("\r") == 2 and " 50%" in text and "100%" in text and text.endswith("s\n")


def test_a_model_load_reports_its_progress(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wai.engines")
    model = load_model(embedded_model_path(), L.llama_model_default_params())
    L.llama_model_free(model)
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loading")]
    assert progress and progress[-1].startswith(f"loading {embedded_model_path().name}: 100%")
