"""Graph traversal on small random graphs (Chapter 3, full mode), after Graves et al. 2016 (Fig. 2, "traversal").

A random directed graph with ``nodes`` nodes is described edge by edge, in random order, as triples
(source, edge label, destination). Each node has ``out_degree`` outgoing edges with distinct labels, so a
start node and a list of labels define a unique path. Then the query: the start node, followed by one
label per step; at each of those steps the model must output the node reached so far.

Encoding (V = nodes, E = edge labels): each input step is [source one-hot V | label one-hot E |
destination one-hot V | description flag | query flag]. Description steps 0..M-1 (M = nodes * out_degree)
carry one edge each; step M has the query flag and the start node in the source field; steps M+1..M+P carry
one label each (query flag on) and ask for the reached node as a one-hot V-vector (a bit target: the
course's ``bits_error`` counts wrong bits, 0 means the right node).

Returns a :class:`~mem_tutorial.tasks.algorithmic.TaskBatch` (``inputs`` [B, T, 2V+E+2], ``targets``
[B, T, V], ``masks`` [B, T], ``lengths`` [B]) with T = M + 1 + P for every sequence.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mem_tutorial.tasks.algorithmic import TaskBatch


def graph_traversal_task(
    batch_size: int,
    *,
    nodes: int = 6,
    out_degree: int = 2,
    labels: int = 3,
    path_length: int = 3,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> TaskBatch:
    """Random graphs described edge by edge, then a traversal query (see the module docstring).

    Args:
        batch_size: B.
        nodes: V nodes per graph.
        out_degree: outgoing edges per node (each with a distinct label), at most ``labels``.
        labels: E edge labels.
        path_length: P labels to follow in the query.
        generator: a seeded ``torch.Generator`` (a fresh unseeded one when omitted).
        device: where the batch goes (default: the generator's device).
    """
    if not 1 <= out_degree <= labels:
        raise ValueError(f"graph_traversal_task: need 1 <= out_degree <= labels, got {out_degree}, {labels}")
    if nodes < 2 or path_length < 1:
        raise ValueError(f"graph_traversal_task: need nodes >= 2 and path_length >= 1, got {nodes}, {path_length}")
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    gen, gdev = generator, generator.device
    out_dev = torch.device(device) if device is not None else gdev
    B, V, E, D, P = batch_size, nodes, labels, out_degree, path_length
    M = V * D
    # edges: node v has D distinct labels (the first D of a random permutation) and random destinations
    edge_label = torch.rand(B, V, E, generator=gen, device=gdev).argsort(-1)[..., :D]  # [B, V, D]
    edge_dst = torch.randint(0, V, (B, V, D), generator=gen, device=gdev)  # [B, V, D]
    edge_src = torch.arange(V, device=gdev).view(1, V, 1).expand(B, V, D)
    order = torch.rand(B, M, generator=gen, device=gdev).argsort(-1)  # presentation order
    src = edge_src.reshape(B, M).gather(1, order)
    lab = edge_label.reshape(B, M).gather(1, order)
    dst = edge_dst.reshape(B, M).gather(1, order)
    # the query: a random walk of P steps (a loop over path steps, not over the batch)
    node = torch.randint(0, V, (B,), generator=gen, device=gdev)
    start = node
    walk_labels, walk_nodes = [], []
    for _ in range(P):
        k = torch.randint(0, D, (B,), generator=gen, device=gdev)
        rows = torch.arange(B, device=gdev)
        walk_labels.append(edge_label[rows, node, k])
        node = edge_dst[rows, node, k]
        walk_nodes.append(node)
    T = M + 1 + P
    width = 2 * V + E + 2
    inputs = torch.zeros(B, T, width, device=gdev)
    inputs[:, :M, :V] = F.one_hot(src, V).float()
    inputs[:, :M, V : V + E] = F.one_hot(lab, E).float()
    inputs[:, :M, V + E : 2 * V + E] = F.one_hot(dst, V).float()
    inputs[:, :M, 2 * V + E] = 1.0
    inputs[:, M, :V] = F.one_hot(start, V).float()
    inputs[:, M:, 2 * V + E + 1] = 1.0
    inputs[:, M + 1 :, V : V + E] = F.one_hot(torch.stack(walk_labels, 1), E).float()
    targets = torch.zeros(B, T, V, device=gdev)
    targets[:, M + 1 :] = F.one_hot(torch.stack(walk_nodes, 1), V).float()
    masks = torch.zeros(B, T, device=gdev)
    masks[:, M + 1 :] = 1.0
    return TaskBatch(inputs, targets, masks, torch.full((B,), T, device=gdev)).to(out_dev)
