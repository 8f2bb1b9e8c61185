"""Long audio a block at a time: the decoder's blocks (sizes, the duration bound checked from
the container and from the samples), and the cut of each block at its quietest moment."""

from __future__ import annotations

import numpy as np
import pytest

from tests.speech_audio import wav
from wai.engines.speech import audio
from wai.engines.speech.types import SAMPLE_RATE, SpeechFailed
from wai.engines.speech.whisper import CUT_SEARCH_SECONDS, _at_pauses, _quietest


def _tone(seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)


def test_blocks_have_the_asked_size_and_hold_every_sample() -> None:
    data = wav(_tone(10.3), SAMPLE_RATE)
    got = list(audio.blocks(data, 60, 4.0))
    assert [len(b) for b in got] == [4 * SAMPLE_RATE, 4 * SAMPLE_RATE, int(2.3 * SAMPLE_RATE)]
    assert all(b.dtype == np.float32 and np.abs(b).max() <= 1 for b in got)
    np.testing.assert_array_equal(np.concatenate(got), next(audio.blocks(data, 60, 60)))


def test_blocks_come_out_as_decoded_and_the_count_of_samples_bounds_the_duration() -> None:
    """10 s against a 9.95 s limit: within the slack given to the container's own duration, so
    the count of samples is what refuses it, after the first blocks came out."""
    blocks = audio.blocks(wav(_tone(10.0), SAMPLE_RATE), 9.95, 4.0)
    assert len(next(blocks)) == len(next(blocks)) == 4 * SAMPLE_RATE
    with pytest.raises(SpeechFailed) as e:
        next(blocks)
    assert e.value.kind == "too_long"


def test_a_container_that_says_it_is_too_long_is_refused_before_decoding() -> None:
    data = wav(_tone(10.0), SAMPLE_RATE)
    blocks = audio.blocks(data, 5.0, 4.0)
    with pytest.raises(SpeechFailed) as e:
        next(blocks)
    assert e.value.kind == "too_long" and "5 s" in e.value.message


def test_empty_and_undecodable_audio_is_bad_audio() -> None:
    for data in (b"", b"\x00" * 1000, b"not audio at all" * 50):
        with pytest.raises(SpeechFailed) as e:
            list(audio.blocks(data, 60, 4.0))
        assert e.value.kind == "bad_audio"


def test_the_cut_falls_in_the_quietest_moment_of_the_blocks_end() -> None:
    sound = _tone(20.0).astype(np.float32) / 32768
    quiet = 16 * SAMPLE_RATE
    sound[quiet : quiet + SAMPLE_RATE // 5] = 0  # 200 ms of silence, 4 s before the end
    cut = _quietest(sound)
    assert quiet <= cut <= quiet + SAMPLE_RATE // 5
    loud = _tone(20.0).astype(np.float32) / 32768
    assert len(loud) - _quietest(loud) <= CUT_SEARCH_SECONDS * SAMPLE_RATE  # never earlier
    assert _quietest(loud[: SAMPLE_RATE // 20]) == SAMPLE_RATE // 20  # too short to cut


def test_pieces_cut_at_pauses_keep_every_sample_in_order() -> None:
    rng = np.random.default_rng(0)
    whole = rng.standard_normal(70 * SAMPLE_RATE).astype(np.float32)
    whole[25 * SAMPLE_RATE : 25 * SAMPLE_RATE + 4000] = 0
    blocks = [whole[i : i + 30 * SAMPLE_RATE] for i in range(0, len(whole), 30 * SAMPLE_RATE)]
    pieces = list(_at_pauses(iter(blocks)))
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    assert 25 * SAMPLE_RATE <= len(pieces[0]) <= 25 * SAMPLE_RATE + 4000


def test_the_last_block_is_never_cut() -> None:
    """Audio of one block (up to 4 minutes) goes through the pipeline whole, in one batch."""
    rng = np.random.default_rng(1)
    one = rng.standard_normal(45 * SAMPLE_RATE).astype(np.float32)
    one[40 * SAMPLE_RATE : 41 * SAMPLE_RATE] = 0  # a pause it could have been cut at
    (piece,) = _at_pauses(iter([one]))
    np.testing.assert_array_equal(piece, one)


def test_the_tail_is_the_last_seconds_and_the_duration_the_whole() -> None:
    """smart-turn hears the last 8 s: decoded a block at a time, the rest let go."""
    data = wav(_tone(20.5), SAMPLE_RATE)
    whole = next(audio.blocks(data, 60, 60))
    end, duration = audio.tail(data, 60, 8.0)
    np.testing.assert_array_equal(end, whole[-8 * SAMPLE_RATE :])
    assert duration == 20.5
    short, seconds = audio.tail(wav(_tone(3.0), SAMPLE_RATE), 60, 8.0)
    assert len(short) == 3 * SAMPLE_RATE and seconds == 3.0
