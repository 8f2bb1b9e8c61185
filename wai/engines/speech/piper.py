"""A Piper voice (VITS, ONNX) on ONNX Runtime, through piper-tts: text in, 16-bit mono samples
out, sentence by sentence (a cancelled request stops at the next sentence).

Phonemes come from espeak-ng as piper-tts builds it in (its `espeakbridge` and bundled data;
piper-tts is GPL-3.0-or-later and is loaded in this engine process only). The voice's ONNX graph
draws noise, so the same text does not give the same samples twice."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
from piper.config import PiperConfig, SynthesisConfig
from piper.voice import PiperVoice

from wai.engines.speech.types import SpeechConfig, SpeechFailed

MAX_SPEED = 4.0


class Piper:
    def __init__(self, config: SpeechConfig) -> None:
        path = Path(config.path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = config.n_threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        with open(f"{path}.json", encoding="utf-8") as f:
            voice_config = PiperConfig.from_dict(json.load(f))
        session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.voice = PiperVoice(config=voice_config, session=session)
        self.sample_rate: int = voice_config.sample_rate
        self.language: str = voice_config.espeak_voice

    def speak(self, text: str, speed: float, cancelled: Callable[[], bool]) -> np.ndarray:
        """The text spoken, as int16 samples at `sample_rate`; a short pause between
        sentences, as Piper's own CLI leaves."""
        if not 0.25 <= speed <= MAX_SPEED:
            raise SpeechFailed("bad_audio", f"speed must be from 0.25 to {MAX_SPEED}")
        syn = SynthesisConfig(length_scale=1.0 / speed)
        pause = np.zeros(int(self.sample_rate * 0.2), np.int16)
        parts: list[np.ndarray] = []
        for chunk in self.voice.synthesize(text, syn):
            if cancelled():
                raise SpeechFailed("error", "cancelled")
            if parts:
                parts.append(pause)
            parts.append(chunk.audio_int16_array.reshape(-1))
        if not parts:
            raise SpeechFailed("bad_audio", "the text has nothing to speak")
        return np.concatenate(parts)
