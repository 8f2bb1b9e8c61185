"""engines/llamacpp/wire.py on engines/process/frames.py: the channel to an engine process,
frame by frame."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from wai.engines.llamacpp import wire
from wai.engines.llamacpp.config import LlamaCppConfig
from wai.engines.llamacpp.types import (
    Counters,
    Delta,
    EngineInfo,
    Failed,
    Finished,
    SamplingParams,
    TokenEvent,
    TokenRequest,
    Usage,
)
from wai.engines.process import frames


def test_events_cross_the_channel_unchanged() -> None:
    events: list[TokenEvent] = [
        Delta("héllo", 42),
        Delta("", 7),
        Finished("stop", Usage(5, 2, 1)),
        Failed("inference failed"),
    ]
    step = wire.Step([wire.event_msg(i, ev) for i, ev in enumerate(events)], Counters(1, 2))
    data = wire.frame(step)
    assert frames.frame_size(data[: frames.HEADER_SIZE]) == len(data) - frames.HEADER_SIZE
    back = wire.from_engine.decode(data[frames.HEADER_SIZE :])
    assert isinstance(back, wire.Step) and back.counters == Counters(1, 2)
    assert [wire.msg_event(m) for m in back.events] == list(enumerate(events))


def test_a_request_crosses_the_channel_unchanged() -> None:
    req = TokenRequest(
        [1, 2, 3],
        9,
        SamplingParams(temperature=0.3, top_p=0.9, seed=4, logit_bias=((5, -1.5),)),
        reject_if_busy=True,
        ignore_eos=True,
        stop=("\n\n",),
    )
    data = wire.frame(wire.Submit(req))
    back = wire.to_engine.decode(data[frames.HEADER_SIZE :])
    assert isinstance(back, wire.Submit) and back.request == req


def test_a_frame_size_out_of_step_is_refused() -> None:
    with pytest.raises(ValueError, match="out of step"):
        frames.frame_size((frames.MAX_FRAME + 1).to_bytes(4, "little"))


def test_frames_are_read_whole_across_partial_reads() -> None:
    r, w = os.pipe()
    try:
        data = wire.frame(wire.Cancel(12345)) + wire.frame(wire.Stop())
        for i in range(len(data)):  # one byte at a time
            os.write(w, data[i : i + 1])
        os.close(w)
        w = -1
        assert wire.read_to_engine(r) == wire.Cancel(12345)
        assert wire.read_to_engine(r) == wire.Stop()
        assert wire.read_to_engine(r) is None  # end of file: the server has gone
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_ready_carries_how_the_model_runs() -> None:
    info = EngineInfo("CPU", 0, False, "m.gguf", True, "warm-up passed")
    ready = wire.Ready(256, None, {"general.name": "m"}, info, 1024, 2048)
    back = wire.from_engine.decode(wire.frame(ready)[frames.HEADER_SIZE :])
    assert back == ready and isinstance(back, wire.Ready) and back.info == info


def test_the_engine_process_gets_the_config_it_was_given(tmp_path: Path) -> None:
    config = LlamaCppConfig(
        path=tmp_path / "m.gguf",
        name="m",
        n_slots=3,
        batch_invariant=False,
        extra_buffers="off",
        cache_dir=tmp_path / "cache",
    )
    spec = msgspec.json.encode({"config": config.as_dict()})
    assert LlamaCppConfig.from_dict(msgspec.json.decode(spec)["config"]) == config
