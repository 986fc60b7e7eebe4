"""The ONNX graph built from raw weights must equal the sentence-transformers reference on the same weights."""

from __future__ import annotations

import numpy as np
import pytest

from classifier import graph as graphmod
from classifier import tokenizer as tokmod
from training import export

from .conftest import fake_e5

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")


@pytest.mark.parametrize("fused", [False, True])
def test_onnx_encoder_matches_sentence_transformers(tmp_path, fused):
    import onnxruntime as ort

    from training import st_model

    f = fake_e5(3)
    st_dir = st_model.build(tmp_path / "st", f)
    st = st_model.load(st_dir, 64)
    tok = tokmod.build(f.pieces, f.scores, f.unk, f.bos, f.eos, f.pad)
    texts = ["hello world", "translate the code to python please", "你好", "a", "the world " * 20]
    ids, mask = tokmod.encode(tok, texts, 64)
    ref = st_model.embed_ids(st, ids, mask)
    import onnx

    onnx.save(graphmod.build_encoder_graph(f, fused=fused), tmp_path / "enc.onnx")
    sess = ort.InferenceSession(str(tmp_path / "enc.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
    assert np.abs(ref - got).max() < 1e-4
    # sentence-transformers' own tokenisation path gives the same ids as ours
    st_ids = st.tokenizer([tokmod.QUERY_PREFIX + t for t in texts[:3]])["input_ids"]
    for row, m, want in zip(ids, mask, st_ids, strict=False):
        assert row[m == 1].tolist() == want


def test_export_check_refuses_disagreement():
    ref = np.eye(13)[np.arange(200) % 13]
    got = ref.copy()
    assert export.check_export(ref, got)["top1_agreement"] == 1.0
    got[:2] = np.roll(got[:2], 1, axis=1)  # 2 of 200 flipped: 99.0% < 99.5%
    with pytest.raises(export.ExportError, match="99.00%"):
        export.check_export(ref, got)
