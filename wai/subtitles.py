"""Timed text: WebVTT (what Workers AI's Whisper ids put in `vtt`) and SubRip (OpenAI's
`response_format=srt`), from (start, end, text) cues in seconds."""

from __future__ import annotations

from collections.abc import Iterable

Cue = tuple[float, float, str]


def _clock(seconds: float, decimal: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def _text(text: str) -> str:
    """A cue's text on one line, with nothing that would end it ("-->" or a blank line)."""
    return " ".join(text.replace("-->", "->").split())


def vtt(cues: Iterable[Cue]) -> str:
    lines = ["WEBVTT", ""]
    for start, end, text in cues:
        lines += [f"{_clock(start, '.')} --> {_clock(end, '.')}", _text(text), ""]
    return "\n".join(lines)


def srt(cues: Iterable[Cue]) -> str:
    lines = []
    for i, (start, end, text) in enumerate(cues, 1):
        lines += [str(i), f"{_clock(start, ',')} --> {_clock(end, ',')}", _text(text), ""]
    return "\n".join(lines)
