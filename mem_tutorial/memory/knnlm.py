"""Nearest-neighbour language models (Khandelwal et al. 2020, "Generalization through Memorization").

Shapes: Q queries (context positions), K neighbours, V vocabulary, D key width, N datastore entries.

The datastore holds one entry per token of a text: the key is the LM's representation of the context,
k_i = f(c_i), and the value is the token that followed it, v_i = w_i (Section 2 of the paper):

    (K, V) = {(f(c_i), w_i) | (c_i, w_i) in D}.

At test time the context x is mapped to q = f(x), its K nearest keys N are retrieved by squared L2 distance d, and

    p_kNN(y | x) ∝ Σ_{(k_i, v_i) in N} 1[y = v_i] exp(-d(k_i, q) / T)                    (Eq. 2; T: temperature)
    p(y | x)     = λ p_kNN(y | x) + (1 - λ) p_LM(y | x)                                  (Eq. 3)

The search reuses Chapter 6's indexes (:mod:`mem_tutorial.memory.index`): squared L2 is turned into a maximum
inner product, -|q - k|^2 / 2 = q·k - |k|^2/2 - |q|^2/2, so with keys [k, -|k|^2/2] and queries [q, 1] the best
inner products are the nearest keys (and the distance is recovered exactly from the score).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mem_tutorial.memory._shapes import check_shape
from mem_tutorial.memory.index import ExactIndex, NearestNeighbourIndex

#: Probabilities are clamped to at least this before a logarithm (a token no neighbour and no LM predicts).
LOG_EPS = 1e-12


def knn_distribution(distances: torch.Tensor, values: torch.Tensor, vocab_size: int, temperature: float = 1.0
                     ) -> torch.Tensor:
    """p_kNN [Q, V] from the K neighbours' squared distances [Q, K] and value tokens [Q, K] (Eq. 2).

    A softmax of -d / T over the neighbours, summed per value token (neighbours with the same token add up).
    """
    check_shape("distances", distances, "Q K")
    check_shape("values", values, "Q K", {"Q": distances.shape[0], "K": distances.shape[1]})
    w = torch.softmax(-distances / temperature, dim=-1)
    out = torch.zeros(distances.shape[0], vocab_size, dtype=w.dtype, device=w.device)
    return out.scatter_add(-1, values.long(), w)


def interpolate(p_knn: torch.Tensor, p_lm: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """p = λ p_kNN + (1 - λ) p_LM (Eq. 3); [..., V] each, λ a number or broadcastable tensor."""
    if p_knn.shape != p_lm.shape:
        raise ValueError(f"p_knn {tuple(p_knn.shape)} and p_lm {tuple(p_lm.shape)} differ in shape")
    return lam * p_knn + (1 - lam) * p_lm


def build_datastore(hidden: torch.Tensor, tokens: torch.Tensor, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Datastore entries from a batch of texts: hidden [B, T, D] (position t's context representation) and
    tokens [B, T] (padded with ``pad``) -> keys [N, D], values [N] with one entry per real next token:
    key = hidden[b, t], value = tokens[b, t + 1] (row-major order over b, then t)."""
    sizes = check_shape("hidden", hidden, "B T D")
    check_shape("tokens", tokens, "B T", sizes)
    real = tokens[:, 1:] != pad  # [B, T-1]
    return hidden[:, :-1][real], tokens[:, 1:][real]


def l2_keys(keys: torch.Tensor) -> torch.Tensor:
    """[N, D] -> [N, D+1]: [k, -|k|^2 / 2], so that inner products with :func:`l2_queries` rank by L2 distance."""
    return torch.cat([keys, -(keys * keys).sum(-1, keepdim=True) / 2], dim=-1)


def l2_queries(queries: torch.Tensor) -> torch.Tensor:
    """[Q, D] -> [Q, D+1]: [q, 1]."""
    return torch.cat([queries, queries.new_ones(queries.shape[0], 1)], dim=-1)


class Datastore:
    """A kNN-LM datastore: keys [N, D], values [N], an owner label per entry (for edits), and an index.

    Args:
        index: a factory of Chapter 6 indexes over inner products (default exact search; e.g.
            ``lambda: IVFIndex(metric="ip", n_probe=4)``).
    """

    def __init__(self, index: Callable[[], NearestNeighbourIndex] | None = None):
        self.index_factory = index or (lambda: ExactIndex(metric="ip"))
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.owners: list[str] = []
        self._index = None

    def __len__(self) -> int:
        return 0 if self.values is None else int(self.values.shape[0])

    def add(self, keys: torch.Tensor, values: torch.Tensor, owner: str = "") -> None:
        """Append entries keys [n, D], values [n]."""
        check_shape("keys", keys, "N D")
        check_shape("values", values, "N", {"N": keys.shape[0]})
        keys, values = keys.detach(), values.detach().long()
        self.keys = keys if self.keys is None else torch.cat([self.keys, keys.to(self.keys)])
        self.values = values if self.values is None else torch.cat([self.values, values.to(self.values)])
        self.owners += [owner] * keys.shape[0]
        self._index = None

    def remove_owner(self, owner: str) -> int:
        """Delete every entry added with ``owner``; returns how many."""
        keep = torch.tensor([o != owner for o in self.owners], device=self.values.device)
        n = int((~keep).sum())
        self.keys, self.values = self.keys[keep], self.values[keep]
        self.owners = [o for o in self.owners if o != owner]
        self._index = None
        return n

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k nearest entries of each query [Q, D]: (squared L2 distances [Q, k], values [Q, k]), nearest first."""
        if not len(self):
            raise RuntimeError("the datastore is empty")
        if self._index is None:
            self._index = self.index_factory().build(l2_keys(self.keys))
        k = min(k, len(self))
        scores, ids = self._index.search(l2_queries(queries.detach().to(self.keys)), k)
        dist = ((queries.detach().to(self.keys) ** 2).sum(-1, keepdim=True) - 2 * scores).clamp_min(0)
        return dist, self.values[ids]


def knn_lm_probs(p_lm: torch.Tensor, hidden: torch.Tensor, store: Datastore, lam: float, k: int = 8,
                 temperature: float = 1.0) -> torch.Tensor:
    """p(y | x) [Q, V] of Eq. 3 for contexts with LM probabilities p_lm [Q, V] and representations hidden [Q, D]."""
    dist, vals = store.search(hidden, k)
    return interpolate(knn_distribution(dist, vals, p_lm.shape[-1], temperature).to(p_lm), p_lm, lam)


def token_log_probs(model, tokens: torch.Tensor, store: Datastore | None = None, lam: float = 0.0, k: int = 8,
                    temperature: float = 1.0, pad: int = 0) -> torch.Tensor:
    """log p(w_{t+1} | w_<=t) of every real next token of tokens [B, T] (flattened, row-major), under the LM
    alone (``store`` None or λ = 0) or the kNN-LM."""
    with torch.no_grad():
        logits, hidden = model(tokens)
        p_lm = torch.softmax(logits[:, :-1], -1)
        real = tokens[:, 1:] != pad
        p, h, y = p_lm[real], hidden[:, :-1][real], tokens[:, 1:][real]
        if store is not None and lam > 0:
            p = knn_lm_probs(p, h, store, lam, k, temperature)
        return torch.log(p.gather(-1, y.unsqueeze(-1)).squeeze(-1).clamp_min(LOG_EPS))


def perplexity(log_probs: torch.Tensor) -> float:
    """exp(mean negative log-likelihood) of per-token log-probabilities."""
    return float(torch.exp(-log_probs.double().mean()))


def hidden_states(model, tokens: torch.Tensor) -> torch.Tensor:
    """The LM's context representations [B, T, D] (no gradient)."""
    with torch.no_grad():
        return model(tokens)[1]


def datastore_from_texts(model, vocab, texts: Sequence[Sequence[str]], owners: Sequence[str] | None = None,
                         store: Datastore | None = None, batch_size: int = 256) -> Datastore:
    """Add one entry per token of each text (rendered as <bos> text <eos>) to ``store`` (a new one by default)."""
    store = store if store is not None else Datastore()
    device = next(model.parameters()).device
    owners = list(owners) if owners is not None else [""] * len(texts)
    for i in range(0, len(texts), batch_size):
        chunk = texts[i : i + batch_size]
        tokens = vocab.batch(chunk, device=device)
        h = hidden_states(model, tokens)
        for j, owner in enumerate(owners[i : i + batch_size]):
            keys, values = build_datastore(h[j : j + 1], tokens[j : j + 1])
            store.add(keys, values, owner)
    return store
