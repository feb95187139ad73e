"""A tiny causal Transformer language model (Vaswani et al. 2017; GPT-style pre-LN blocks, Radford et al. 2019).

Shapes: B batch, T time (tokens), D model width, V vocabulary.

The model returns, with the next-token logits, the **hidden state** it predicts them from: the output of the
final layer norm, h_t [B, T, D], with logits_t = h_t E^T + b. This is the context representation f(c_t) that the
kNN-LM stores as a key (Khandelwal et al. 2020 use the input of the last layer's feed-forward block after layer
norm; with a model this small, the final representation works as well and is simpler to explain).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

PAD, BOS, EOS = 0, 1, 2


class Vocab:
    """Token <-> id; id 0 is padding, 1 <bos>, 2 <eos> (see :func:`mem_tutorial.data.tinyworld.vocabulary`)."""

    def __init__(self, tokens: Sequence[str]):
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if self.itos[:3] != ["<pad>", "<bos>", "<eos>"]:
            raise ValueError("the first three tokens must be <pad>, <bos>, <eos>")

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: Sequence[str]) -> list[int]:
        try:
            return [self.stoi[w] for w in words]
        except KeyError as exc:
            raise KeyError(f"token {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def batch(self, texts: Sequence[Sequence[str]], eos: bool = True, device=None) -> torch.Tensor:
        """[B, T] ids: <bos> text (<eos>), right-padded with 0."""
        rows = [[BOS] + self.encode(t) + ([EOS] if eos else []) for t in texts]
        out = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out.to(device) if device is not None else out


@dataclass
class LMConfig:
    vocab_size: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 256
    max_len: int = 48
    dropout: float = 0.0


class Block(nn.Module):
    """Pre-LN Transformer block: x + Attn(LN(x)), then x + FFN(LN(x)), causal self-attention."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.ff(self.ln2(x))


class TinyLM(nn.Module):
    """Token + learned position embeddings, ``n_layers`` causal blocks, final layer norm, tied output layer."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError("d_model must be a multiple of n_heads")
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [B, T] -> (logits [B, T, V], hidden [B, T, D]); position t predicts token t + 1."""
        t = tokens.shape[1]
        if t > self.cfg.max_len:
            raise ValueError(f"sequence of {t} tokens is longer than max_len={self.cfg.max_len}")
        x = self.tok(tokens) + self.pos(torch.arange(t, device=tokens.device))
        for blk in self.blocks:
            x = blk(x)
        h = self.ln_f(x)
        return h @ self.tok.weight.T + self.bias, h


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over real (non-pad) targets: logits[:, t] predicts tokens[:, t + 1]."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), ignore_index=PAD)


def train_lm(model: TinyLM, vocab: Vocab, sample, steps: int, batch_size: int = 32, lr: float = 3e-3,
             seed: int = 0, device=None, log_every: int = 0) -> list[float]:
    """Adam with linear warm-up (5 %) and cosine decay; ``sample(rng, n)`` returns ``n`` token lists.

    Returns the training loss of every step.
    """
    device = device or next(model.parameters()).device
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    losses = []
    model.train()
    for step in range(steps):
        tokens = vocab.batch(sample(rng, batch_size), device=device)
        loss = lm_loss(model(tokens)[0], tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1:5d}  loss {sum(losses[-log_every:]) / log_every:.4f}")
    model.eval()
    return losses


@torch.no_grad()
def next_token_probs(model: TinyLM, vocab: Vocab, prompts: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """For each prompt (token list, no <eos>): (p_LM [B, V] of the next token, hidden [B, D] it came from).

    Prompts of different lengths are right-padded; each row is read at its own last position.
    """
    device = next(model.parameters()).device
    tokens = vocab.batch(prompts, eos=False, device=device)
    last = torch.tensor([len(p) for p in prompts], device=device)  # index of the last real token (after <bos>)
    logits, h = model(tokens)
    rows = torch.arange(len(prompts), device=device)
    return torch.softmax(logits[rows, last], -1), h[rows, last]


def config_dict(cfg: LMConfig) -> dict:
    return asdict(cfg)
