"""Fine-tuned encoder adapters: folded into fp32 graphs and the reference, kept beside the 4-bit weights in q4,
and computed identically by the training stack."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from classifier import build
from classifier import graph as graphmod
from classifier import tokenizer as tokmod
from classifier.e5file import quantize_q4

from .conftest import fake_e5

TEXTS = ["hello world", "translate the code to python please", "你好", "a", "the world " * 20]


def random_adapters(f, layers, rank=2, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    out = {}
    for li in layers:
        for k in ("q", "k", "v", "ao", "fi", "fo"):
            nout, nin = graphmod.linear_shape(f, k)
            out[f"l{li}.{k}.A"] = rng.normal(0, 1 / np.sqrt(nin), (rank, nin)).astype(np.float32)
            out[f"l{li}.{k}.B"] = rng.normal(0, scale, (nout, rank)).astype(np.float32)
    return out


def embed(model, ids, mask, tmp_path, name="g.onnx"):
    import onnx
    import onnxruntime as ort

    onnx.save(model, tmp_path / name)
    sess = ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"])
    return sess.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]


def ids_mask(f):
    tok = tokmod.build(f.pieces, f.scores, f.unk, f.bos, f.eos, f.pad)
    return tokmod.encode(tok, TEXTS, 64)


def q4_fake(seed=3):
    """A fake encoder whose linear and word weights are real Q4_0 blocks (tensors hold their dequantised values)."""
    f = fake_e5(seed)
    t, q = dict(f.tensors), {}
    keys = ["emb.word"] + [f"l{li}.{k}.w" for li in range(f.layers) for k in ("q", "k", "v", "ao", "fi", "fo")]
    for k in keys:
        q[k], t[k] = quantize_q4(t[k])
    return dataclasses.replace(f, tensors=t, q4=q)


def test_adapters_change_the_encoder_and_fold_exactly(tmp_path):
    f = fake_e5(3)
    ad = random_adapters(f, [1])
    ids, mask = ids_mask(f)
    plain = embed(graphmod.build_encoder_graph(f), ids, mask, tmp_path, "plain.onnx")
    folded = embed(graphmod.build_encoder_graph(f, adapters=ad), ids, mask, tmp_path, "folded.onnx")
    fused = embed(graphmod.build_encoder_graph(f, fused=True, adapters=ad), ids, mask, tmp_path, "fused.onnx")
    assert np.abs(plain - folded).max() > 1e-2  # the adapters do something
    assert np.abs(folded - fused).max() < 1e-4
    # folding is W + B @ A on exactly the adapted weights
    m = graphmod.merge_adapters(f, ad)
    w = f.tensors["l1.fi.w"].reshape(f.ffn, f.hidden)
    assert np.allclose(m.tensors["l1.fi.w"].reshape(f.ffn, f.hidden), w + ad["l1.fi.B"] @ ad["l1.fi.A"], atol=1e-6)
    assert np.array_equal(m.tensors["l0.q.w"], f.tensors["l0.q.w"])


def test_q4_graph_keeps_4bit_weights_and_adds_adapters(tmp_path):
    f = q4_fake()
    ad = random_adapters(f, [0, 1], seed=1)
    ids, mask = ids_mask(f)
    ref = embed(graphmod.build_encoder_graph(f, adapters=ad), ids, mask, tmp_path, "ref.onnx")
    got = embed(graphmod.build_encoder_graph(f, q4=True, accuracy_level=0, adapters=ad), ids, mask, tmp_path)
    assert np.abs(ref - got).max() < 1e-3
    without = embed(graphmod.build_encoder_graph(f, q4=True, accuracy_level=0), ids, mask, tmp_path, "no.onnx")
    assert np.abs(without - got).max() > 1e-2


def test_training_stack_matches_the_graph(tmp_path):
    """finetune's torch layers (what the adapters are trained in) == the fp32 graph with the adapters folded."""
    pytest.importorskip("torch")
    import onnx
    import onnxruntime as ort

    from training import finetune as ft

    f = fake_e5(3)
    ad = random_adapters(f, [1], seed=2)
    ids, mask = ids_mask(f)
    want = embed(graphmod.build_encoder_graph(f, adapters=ad), ids, mask, tmp_path)
    onnx.save(graphmod.build_encoder_graph(f), tmp_path / "full.onnx")
    onnx.utils.extract_model(str(tmp_path / "full.onnx"), str(tmp_path / "cut.onnx"),
                             ["input_ids", "attention_mask"], ["l0_ln2"])
    sess = ort.InferenceSession(str(tmp_path / "cut.onnx"), providers=["CPUExecutionProvider"])
    h = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    hs = [h[i, : int(mask[i].sum())] for i in range(len(TEXTS))]
    top = ft.with_adapters(ad, 1, f)
    assert np.abs(ft.embed(top, hs) - want).max() < 1e-4
    back = ft.adapters(top)
    assert set(back) == set(ad) and all(np.allclose(back[k], ad[k]) for k in ad)


def test_reference_pipeline_folds_adapters(tmp_path):
    pytest.importorskip("sentence_transformers")
    from training import st_model

    f = fake_e5(3)
    ad = random_adapters(f, [0], seed=4)
    ids, mask = ids_mask(f)
    st = st_model.load(st_model.build(tmp_path / "st", graphmod.merge_adapters(f, ad)), 64)
    got = embed(graphmod.build_encoder_graph(f, fused=True, adapters=ad), ids, mask, tmp_path)
    assert np.abs(st_model.embed_ids(st, ids, mask) - got).max() < 1e-4


@pytest.mark.parametrize("bad, match", [
    ({"l7.q.A": np.zeros((2, 32), np.float32), "l7.q.B": np.zeros((32, 2), np.float32)}, "l<0..1>"),
    ({"l0.q.A": np.zeros((2, 32), np.float32)}, "no matching B"),
    ({"l0.fi.A": np.zeros((2, 32), np.float32), "l0.fi.B": np.zeros((32, 2), np.float32)},
     r"expected float32 \(64, 2\)"),
    ({"l0.q.A": np.zeros((2, 32)), "l0.q.B": np.zeros((32, 2), np.float32)}, "float64"),
])
def test_bad_adapters_are_refused_by_name(bad, match):
    with pytest.raises(ValueError, match=match):
        graphmod.check_adapters(fake_e5(3), bad)


def test_model_adapters_checks_the_manifest_hash(tmp_path):
    f = fake_e5(3)
    np.savez(tmp_path / "adapters.npz", **random_adapters(f, [1]))
    man = {"files": {"adapters.npz": "0" * 64}}
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(build.BuildError, match="does not match the sha256"):
        build.model_adapters(tmp_path)
    assert build.model_adapters(tmp_path, {"files": {}}) is None
    assert build.adapters_hash(None) == "" and len(build.adapters_hash(random_adapters(f, [1]))) == 12
