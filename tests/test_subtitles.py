"""subtitles.py: WebVTT and SubRip from timed cues."""

from __future__ import annotations

from wai.subtitles import srt, vtt


def test_vtt_and_srt_cues() -> None:
    cues = [(0.0, 1.5, " Hello there."), (3661.25, 3662.0, "Second  line\nwrapped")]
    assert vtt(cues) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.500\nHello there.\n\n"
        "01:01:01.250 --> 01:01:02.000\nSecond line wrapped\n"
    )
    assert srt(cues) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
        "2\n01:01:01,250 --> 01:01:02,000\nSecond line wrapped\n"
    )


def test_a_cue_text_cannot_end_its_cue() -> None:
    out = vtt([(0.0, 1.0, "a --> b\n\nc")])
    assert out.count("-->") == 1 and "\n\n\n" not in out


def test_no_cues() -> None:
    assert vtt([]) == "WEBVTT\n"
    assert srt([]) == ""
