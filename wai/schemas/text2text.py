"""Translation, summarization and text classification inputs, each id in its official shape
(the cloudflare-docs model files):

- `@cf/meta/m2m100-1.2b`: `{text, source_lang = "en", target_lang}` -> `{translated_text}`; a
  language is a code of the model's (`fr`) or its English name (`french`), as Cloudflare's
  examples write them;
- `@cf/ai4bharat/indictrans2-en-indic-1B`: `{text: string | string[], target_language}` (its
  FLORES codes, `hin_Deva` …), from English -> `{translations}`;
- `@cf/facebook/bart-large-cnn`: `{input_text, max_length = 1024}` -> `{summary}`;
- `@cf/huggingface/distilbert-sst-2-int8`: `{text}` -> `[{label, score}]`, best first.

A field outside the schema is refused by name (nothing is accepted and ignored)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from wai.catalog import INDICTRANS2
from wai.errors import InvalidInput
from wai.schemas.speech import only_fields, reject_if_busy

MAX_TEXT_CHARS = 20_000  # a text to translate or classify
MAX_TEXTS = 128  # indictrans2's list of texts
MAX_ARTICLE_CHARS = 100_000  # a text to summarize
MAX_SUMMARY_TOKENS = 1024

# M2M100's languages by English name (its codes are in weights/seq2seq.M2M100_LANGUAGES)
M2M100_NAMES = {
    "afrikaans": "af", "amharic": "am", "arabic": "ar", "asturian": "ast",
    "azerbaijani": "az", "bashkir": "ba", "belarusian": "be", "bulgarian": "bg",
    "bengali": "bn", "breton": "br", "bosnian": "bs", "catalan": "ca", "cebuano": "ceb",
    "czech": "cs", "welsh": "cy", "danish": "da", "german": "de", "greek": "el",
    "english": "en", "spanish": "es", "estonian": "et", "persian": "fa", "fulah": "ff",
    "finnish": "fi", "french": "fr", "western frisian": "fy", "irish": "ga",
    "scottish gaelic": "gd", "galician": "gl", "gujarati": "gu", "hausa": "ha",
    "hebrew": "he", "hindi": "hi", "croatian": "hr", "haitian": "ht", "hungarian": "hu",
    "armenian": "hy", "indonesian": "id", "igbo": "ig", "iloko": "ilo", "icelandic": "is",
    "italian": "it", "japanese": "ja", "javanese": "jv", "georgian": "ka", "kazakh": "kk",
    "khmer": "km", "kannada": "kn", "korean": "ko", "luxembourgish": "lb", "ganda": "lg",
    "lingala": "ln", "lao": "lo", "lithuanian": "lt", "latvian": "lv", "malagasy": "mg",
    "macedonian": "mk", "malayalam": "ml", "mongolian": "mn", "marathi": "mr",
    "malay": "ms", "burmese": "my", "nepali": "ne", "dutch": "nl", "norwegian": "no",
    "northern sotho": "ns", "occitan": "oc", "oriya": "or", "punjabi": "pa", "polish": "pl",
    "pashto": "ps", "portuguese": "pt", "romanian": "ro", "russian": "ru", "sindhi": "sd",
    "sinhala": "si", "slovak": "sk", "slovenian": "sl", "somali": "so", "albanian": "sq",
    "serbian": "sr", "swati": "ss", "sundanese": "su", "swedish": "sv", "swahili": "sw",
    "tamil": "ta", "thai": "th", "tagalog": "tl", "tswana": "tn", "turkish": "tr",
    "ukrainian": "uk", "urdu": "ur", "uzbek": "uz", "vietnamese": "vi", "wolof": "wo",
    "xhosa": "xh", "yiddish": "yi", "yoruba": "yo", "chinese": "zh", "zulu": "zu",
}  # fmt: skip
M2M100_CODES = frozenset(M2M100_NAMES.values())
# IndicTrans2's target codes (its schema's enum, in order), with M2M100's code where M2M100 has
# the language (an M2M100 model answering the id translates those; the others are refused)
INDICTRANS2_TARGETS = {
    "asm_Beng": None, "awa_Deva": None, "ben_Beng": "bn", "bho_Deva": None,
    "brx_Deva": None, "doi_Deva": None, "eng_Latn": "en", "gom_Deva": None,
    "gon_Deva": None, "guj_Gujr": "gu", "hin_Deva": "hi", "hne_Deva": None,
    "kan_Knda": "kn", "kas_Arab": None, "kas_Deva": None, "kha_Latn": None,
    "lus_Latn": None, "mag_Deva": None, "mai_Deva": None, "mal_Mlym": "ml",
    "mar_Deva": "mr", "mni_Beng": None, "mni_Mtei": None, "npi_Deva": "ne",
    "ory_Orya": "or", "pan_Guru": "pa", "san_Deva": None, "sat_Olck": None,
    "snd_Arab": "sd", "snd_Deva": None, "tam_Taml": "ta", "tel_Telu": None,
    "urd_Arab": "ur", "unr_Deva": None,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class TranslationInput:
    texts: tuple[str, ...]
    source: str  # the language's code as the request gave it, resolved (M2M100's: "en")
    target: str
    shape: Literal["m2m100", "indictrans2"]
    target_name: str  # as the request named it (for a refusal that says which)
    reject_if_busy: bool = False


@dataclass(frozen=True, slots=True)
class SummaryInput:
    text: str
    max_length: int = MAX_SUMMARY_TOKENS
    reject_if_busy: bool = False


@dataclass(frozen=True, slots=True)
class ClassificationInput:
    text: str
    reject_if_busy: bool = False


Text2TextInput = TranslationInput | SummaryInput | ClassificationInput


def parse_text2text(model_id: str, kind: str, body: Any) -> Text2TextInput:
    """Validate a body for a translation, summarization or classification id; raises
    InvalidInput naming the field."""
    if not isinstance(body, dict):
        raise InvalidInput("Type mismatch of '/', expected an object")
    busy = reject_if_busy(body.get("options"))
    if kind == "translation" and model_id == INDICTRANS2:
        return _indictrans2(body, busy)
    if kind == "translation":
        return _m2m100(model_id, body, busy)
    if kind == "summarization":
        text = _text(body, "input_text", MAX_ARTICLE_CHARS)  # (a missing field said first)
        only_fields(body, {"input_text", "max_length", "options"}, model_id)
        max_length = body.get("max_length", MAX_SUMMARY_TOKENS)
        if not isinstance(max_length, int) or isinstance(max_length, bool):
            raise InvalidInput("'/max_length': must be an integer")
        if not 1 <= max_length <= MAX_SUMMARY_TOKENS:
            raise InvalidInput(f"'/max_length': must be between 1 and {MAX_SUMMARY_TOKENS}")
        return SummaryInput(text, max_length, busy)
    text = _text(body, "text", MAX_TEXT_CHARS)
    only_fields(body, {"text", "options"}, model_id)
    return ClassificationInput(text, busy)


def _m2m100(model_id: str, body: dict[str, Any], busy: bool) -> TranslationInput:
    text = _text(body, "text", MAX_TEXT_CHARS)
    if "target_lang" not in body:
        raise InvalidInput("'/target_lang': required (a language code such as 'fr')")
    only_fields(body, {"text", "source_lang", "target_lang", "options"}, model_id)
    source = m2m100_language(body.get("source_lang", "en"), "source_lang")
    target = m2m100_language(body["target_lang"], "target_lang")
    return TranslationInput((text,), source, target, "m2m100", str(body["target_lang"]), busy)


def m2m100_language(value: Any, field: str) -> str:
    """A language as M2M100 codes it: its code (`fr`, `zh`, also `fr-FR`), or its English name
    (`French`)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"'/{field}': must be a language code such as 'fr'")
    key = value.strip().lower().replace("_", "-")
    code = M2M100_NAMES.get(key, key)
    if code not in M2M100_CODES:
        code = code.split("-")[0]
    if code not in M2M100_CODES:
        raise InvalidInput(
            f"'/{field}': {value!r} is not one of M2M100's 100 languages (a code such as 'fr', "
            "or an English name such as 'french')"
        )
    return code


def _indictrans2(body: dict[str, Any], busy: bool) -> TranslationInput:
    raw = body.get("text")
    if raw is None:
        raise InvalidInput("'/text': required (a string, or a list of strings)")
    if isinstance(raw, str):
        texts: tuple[str, ...] = (_text(body, "text", MAX_TEXT_CHARS),)
    elif isinstance(raw, list):
        if not 1 <= len(raw) <= MAX_TEXTS:
            raise InvalidInput(f"'/text': between 1 and {MAX_TEXTS} texts")
        texts = tuple(_one(t, f"text/{i}", MAX_TEXT_CHARS) for i, t in enumerate(raw))
    else:
        raise InvalidInput("Type mismatch of '/text', expected a string or a list of strings")
    target = body.get("target_language")
    if target is None:
        raise InvalidInput("'/target_language': required (such as 'hin_Deva')")
    only_fields(body, {"text", "target_language", "options"}, INDICTRANS2)
    if target not in INDICTRANS2_TARGETS:
        raise InvalidInput(f"'/target_language': must be one of {', '.join(INDICTRANS2_TARGETS)}")
    return TranslationInput(texts, "eng_Latn", target, "indictrans2", target, busy)


def _text(body: dict[str, Any], field: str, limit: int) -> str:
    if field not in body:
        raise InvalidInput(f"'/{field}': required")
    return _one(body[field], field, limit)


def _one(value: Any, where: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"Type mismatch of '/{where}', expected a string")
    if not value.strip():
        raise InvalidInput(f"'/{where}': must not be empty")
    if len(value) > limit:
        raise InvalidInput(f"'/{where}': longer than {limit} characters")
    return value
