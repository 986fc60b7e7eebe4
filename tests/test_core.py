from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from classifier import Classifier, InputError, ModelError
from classifier.labels import LABELS
from classifier.text import MAX_CHARS, to_text
from classifier.tokenizer import encode


def test_import_does_not_pull_heavy_libraries():
    code = ("import sys, classifier, classifier.cli; from classifier import Classifier; "
            "bad = [m for m in ('torch', 'transformers', 'sentence_transformers', 'sklearn') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_chat_request_uses_system_prompt_and_last_user_turn():
    req = {"messages": [{"role": "system", "content": "You are Aria, a shy elf."},
                        {"role": "user", "content": "first question"},
                        {"role": "assistant", "content": "an answer"},
                        {"role": "user", "content": [{"type": "text", "text": "*waves* hello"},
                                                     {"type": "image_url", "image_url": {"url": "x"}}]}]}
    assert to_text(req) == "You are Aria, a shy elf.\n\n*waves* hello"
    assert to_text({"request": req}) == to_text(req)


def test_bad_items_get_errors_naming_the_field():
    with pytest.raises(InputError, match=r"request.messages\[0\].content"):
        to_text({"messages": [{"role": "user", "content": 5}]})
    with pytest.raises(InputError, match="expected a string"):
        to_text(42)
    with pytest.raises(InputError, match="text: expected a string"):
        to_text({"text": ["a"]})
    assert to_text({"messages": [{"role": "assistant", "content": "hi"}]}) == ""  # no user turn


def test_long_text_keeps_head_and_tail():
    long = "HEAD " + "x" * (2 * MAX_CHARS) + " TAIL"
    t = to_text(long)
    assert t.startswith("HEAD") and t.endswith("TAIL") and len(t) < MAX_CHARS + 10


def test_lone_surrogates_are_replaced():
    assert "?" in to_text("abc\ud800def")


def test_token_truncation_keeps_head_and_tail(fake_clf):
    ids, mask = encode(fake_clf._tok, ["hello " * 10 + "world " * 30 + "python"], 16)
    row = ids[0][mask[0] == 1]
    assert len(row) == 16 and row[0] == 0 and row[-1] == 2
    assert fake_clf._tok.id_to_token(int(row[-2])) == "▁python"  # the tail survives
    assert fake_clf._tok.id_to_token(int(row[4])) == "▁hello"  # and so does the head


def test_predict_shapes_and_scores(fake_clf):
    tags = fake_clf.predict(["hello world", {"messages": [{"role": "user", "content": "translate this"}]}])
    assert len(tags) == 2
    for t in tags:
        assert set(t.scores) == set(LABELS)
        assert abs(sum(t.scores.values()) - 1) < 1e-3
        assert t.category == max(t.scores, key=t.scores.get)
        assert t.confident == (t.confidence >= 0.3)
    p = fake_clf.predict_proba(["hello world", "translate"])
    assert p.shape == (2, len(LABELS))
    assert np.allclose(p[0], [tags[0].scores[lab] for lab in fake_clf.labels], atol=1e-5)


def test_batching_does_not_change_results(fake_clf):
    texts = ["hello", "the code in python " * 5, "a", "translate the world"] * 20
    alone = np.stack([fake_clf.predict_proba([t])[0] for t in texts[:4]])
    batched = fake_clf.predict_proba(texts)[:4]
    assert np.abs(alone - batched).max() < 1e-5


@pytest.mark.parametrize("text", ["", "   \n\t ", "😀😀🎉", "!!!???"])
def test_empty_or_symbol_only_input_is_defined(fake_clf, text):
    t = fake_clf.predict([text])[0]
    assert t.language == "und"
    if not text.strip():
        assert (t.category, t.confident) == ("other", False)


def test_megabyte_input(fake_clf):
    t = fake_clf.predict(["hello world " * 90_000])[0]  # ~1 MB
    assert t.category in LABELS


def test_predict_requires_a_list(fake_clf):
    with pytest.raises(TypeError, match="list"):
        fake_clf.predict("hello")


def test_tampered_model_is_refused(fake_model_dir, tmp_path):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(fake_model_dir, d)
    np.savez(d / "head.npz", weight=np.zeros((32, 13), np.float32), bias=np.zeros(13, np.float32))
    with pytest.raises(ModelError, match="does not match the manifest"):
        Classifier.load(d)
    man = json.loads((fake_model_dir / "manifest.json").read_text())
    man["schema_version"] = 99
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelError, match="schema_version"):
        Classifier.load(d)
    with pytest.raises(ModelError, match="no manifest.json"):
        Classifier.load(tmp_path / "nowhere")


def test_model_folder_has_no_pickles(fake_model_dir):
    for p in fake_model_dir.iterdir():
        if p.suffix == ".npz":
            np.load(p, allow_pickle=False)  # raises if the archive holds object arrays
        assert p.suffix not in (".pkl", ".pickle", ".joblib")
