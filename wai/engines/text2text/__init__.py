"""The text-to-text engine family: translation (M2M100), summarization (BART) and text
classification (DistilBERT) on CTranslate2, in a supervised process of its own."""
