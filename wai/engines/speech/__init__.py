"""Speech models in engine processes of their own: Whisper (speech recognition) on
CTranslate2 through faster-whisper, audio decoded by PyAV's FFmpeg. Supervised by the shared
machinery (engines/process/), as llama.cpp's engines are."""
