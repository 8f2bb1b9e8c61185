"""Pipecat's smart-turn (v3.2, int8 ONNX) on ONNX Runtime: has the speaker finished their turn?

The model hears the last 8 seconds (shorter audio is padded with silence in front), as Whisper's
log-mel features: faster-whisper's feature extractor with the waveform normalized first, which
gives pipecat's own features within 4e-6. Its one output is the probability that the turn is
complete."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime
from faster_whisper.feature_extractor import FeatureExtractor

from wai.engines.speech.types import SAMPLE_RATE, SpeechConfig, Turn

WINDOW_SECONDS = 8.0
WINDOW = int(WINDOW_SECONDS * SAMPLE_RATE)
THRESHOLD = 0.5


class SmartTurn:
    def __init__(self, config: SpeechConfig) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = config.n_threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            config.path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.features = FeatureExtractor(feature_size=80, chunk_length=8)

    def detect(self, audio: np.ndarray, duration: float | None = None) -> Turn:
        """The turn heard in the audio's last 8 s; `duration`: the whole audio's, when `audio`
        is only its end."""
        x = audio[-WINDOW:].astype(np.float32)
        x = np.pad(x, (WINDOW - len(x), 0))
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        mel = self.features(x, padding=0)[:, : WINDOW // 160].astype(np.float32)
        (out,) = self.session.run(None, {"input_features": mel[None]})
        p = float(np.asarray(out).reshape(-1)[0])
        seconds = len(audio) / SAMPLE_RATE if duration is None else duration
        return Turn(p > THRESHOLD, round(p, 4), round(seconds, 3))
