"""A catalogue of common wrong answers to the graded exercises (issue #14), used by tests/test_selfchecks.py.

``WRONG_ANSWERS[chapter][grade_id]`` lists ``(name, code)``: ``code`` redefines the exercise's function (or one of
its functions) the way a learner commonly gets it wrong. The mistakes were collected from the equations (what a
term, an index or a dimension can be confused with) and from the usual slips with tensors (the wrong ``dim``, a
batch of one in mind, a missing epsilon, a transposed matrix, an off-by-one).
"""

# -- Chapter 1 -----------------------------------------------------------------------------------------------------
CH1 = {
    "test_cosine_similarity": [
        ("dot product, no normalisation", """
def cosine_similarity(memory, key, eps=1e-8):
    return (memory * key.unsqueeze(1)).sum(-1)
"""),
        ("divides by the key's norm only", """
def cosine_similarity(memory, key, eps=1e-8):
    return (memory * key.unsqueeze(1)).sum(-1) / (key.norm(dim=-1, keepdim=True) + eps)
"""),
        ("divides by the rows' norms only", """
def cosine_similarity(memory, key, eps=1e-8):
    return (memory * key.unsqueeze(1)).sum(-1) / (memory.norm(dim=-1) + eps)
"""),
        ("no eps: NaN for an all-zero row", """
def cosine_similarity(memory, key, eps=1e-8):
    return (memory * key.unsqueeze(1)).sum(-1) / (memory.norm(dim=-1) * key.norm(dim=-1, keepdim=True))
"""),
        ("the first key for every batch element", """
def cosine_similarity(memory, key, eps=1e-8):
    key = key[:1].expand_as(key)
    return (memory * key.unsqueeze(1)).sum(-1) / (memory.norm(dim=-1) * key.norm(dim=-1, keepdim=True) + eps)
"""),
    ],
    "test_content_weighting": [
        ("softmax over the batch, not the slots", """
def content_weighting(memory, key, beta):
    return torch.softmax(beta.unsqueeze(-1) * mem.cosine_similarity(memory, key), dim=0)
"""),
        ("beta left out", """
def content_weighting(memory, key, beta):
    return torch.softmax(mem.cosine_similarity(memory, key), dim=-1)
"""),
        ("one beta (the first) for the whole batch", """
def content_weighting(memory, key, beta):
    return torch.softmax(beta[0] * mem.cosine_similarity(memory, key), dim=-1)
"""),
        ("normalised by the sum, no exponential", """
def content_weighting(memory, key, beta):
    s = beta.unsqueeze(-1) * mem.cosine_similarity(memory, key)
    return s / s.sum(-1, keepdim=True)
"""),
        ("beta divides instead of multiplies", """
def content_weighting(memory, key, beta):
    return torch.softmax(mem.cosine_similarity(memory, key) / beta.unsqueeze(-1).clamp_min(1e-6), dim=-1)
"""),
    ],
    "test_read": [
        ("mean instead of weighted sum", """
def read(memory, weights):
    return memory.mean(dim=1)
"""),
        ("sums over the word, not the slots", """
def read(memory, weights):
    return (weights.unsqueeze(-1) * memory).sum(dim=-1)
"""),
        ("the first batch element's memory for everyone", """
def read(memory, weights):
    return weights @ memory[0]
"""),
        ("softmax of the weights again", """
def read(memory, weights):
    return (torch.softmax(weights, -1).unsqueeze(-1) * memory).sum(dim=1)
"""),
    ],
    "test_write": [
        ("add before erase", """
def write(memory, weights, erase, add):
    w = weights.unsqueeze(-1)
    return (memory + w * add.unsqueeze(1)) * (1 - w * erase.unsqueeze(1))
"""),
        ("erase not weighted by w", """
def write(memory, weights, erase, add):
    w = weights.unsqueeze(-1)
    return memory * (1 - erase.unsqueeze(1)) + w * add.unsqueeze(1)
"""),
        ("no erase", """
def write(memory, weights, erase, add):
    return memory + weights.unsqueeze(-1) * add.unsqueeze(1)
"""),
        ("modifies the memory in place", """
def write(memory, weights, erase, add):
    w = weights.unsqueeze(-1)
    memory.mul_(1 - w * erase.unsqueeze(1)).add_(w * add.unsqueeze(1))
    return memory
"""),
        ("add not weighted by w", """
def write(memory, weights, erase, add):
    w = weights.unsqueeze(-1)
    return memory * (1 - w * erase.unsqueeze(1)) + add.unsqueeze(1)
"""),
    ],
}

# -- Chapter 2 -----------------------------------------------------------------------------------------------------
CH2 = {
    "test_interpolate": [
        ("gate weights the previous weighting", """
def interpolate(content_w, prev_w, gate):
    g = gate.unsqueeze(-1)
    return g * prev_w + (1 - g) * content_w
"""),
        ("one gate (the first) for the whole batch", """
def interpolate(content_w, prev_w, gate):
    return gate[0] * content_w + (1 - gate[0]) * prev_w
"""),
        ("forgot (1 - g)", """
def interpolate(content_w, prev_w, gate):
    g = gate.unsqueeze(-1)
    return g * content_w + prev_w
"""),
        ("the mean gate", """
def interpolate(content_w, prev_w, gate):
    g = gate.mean()
    return g * content_w + (1 - g) * prev_w
"""),
    ],
    "test_shift": [
        ("shift in the wrong direction", """
def shift(weights, shift_dist):
    half = shift_dist.shape[-1] // 2
    out = torch.zeros_like(weights)
    for j in range(shift_dist.shape[-1]):
        out = out + shift_dist[:, j:j + 1] * torch.roll(weights, shifts=half - j, dims=-1)
    return out
"""),
        ("no wrap-around (zero padding)", """
def shift(weights, shift_dist):
    half = shift_dist.shape[-1] // 2
    N = weights.shape[-1]
    padded = torch.nn.functional.pad(weights, (half, half))
    out = torch.zeros_like(weights)
    for j in range(shift_dist.shape[-1]):
        off = j - half
        out = out + shift_dist[:, j:j + 1] * padded[:, half - off: half - off + N]
    return out
"""),
        ("offsets 0..S-1 instead of -(S//2)..S//2", """
def shift(weights, shift_dist):
    out = torch.zeros_like(weights)
    for j in range(shift_dist.shape[-1]):
        out = out + shift_dist[:, j:j + 1] * torch.roll(weights, shifts=j, dims=-1)
    return out
"""),
        ("only the most likely offset (hard shift)", """
def shift(weights, shift_dist):
    half = shift_dist.shape[-1] // 2
    rows = [torch.roll(weights[b], int(shift_dist[b].argmax()) - half, dims=-1) for b in range(weights.shape[0])]
    return torch.stack(rows)
"""),
        ("the first element's shift for the whole batch", """
def shift(weights, shift_dist):
    half = shift_dist.shape[-1] // 2
    out = torch.zeros_like(weights)
    for j in range(shift_dist.shape[-1]):
        out = out + shift_dist[0, j] * torch.roll(weights, shifts=j - half, dims=-1)
    return out
"""),
    ],
    "test_sharpen": [
        ("no renormalisation", """
def sharpen(weights, gamma, eps=1e-12):
    return weights ** gamma.unsqueeze(-1)
"""),
        ("one gamma (the first) for the whole batch", """
def sharpen(weights, gamma, eps=1e-12):
    p = weights ** gamma[0]
    return p / (p.sum(-1, keepdim=True) + eps)
"""),
        ("multiplies by gamma instead of raising to it", """
def sharpen(weights, gamma, eps=1e-12):
    p = weights * gamma.unsqueeze(-1)
    return p / (p.sum(-1, keepdim=True) + eps)
"""),
        ("softmax of gamma * w", """
def sharpen(weights, gamma, eps=1e-12):
    return torch.softmax(gamma.unsqueeze(-1) * weights, dim=-1)
"""),
        ("no eps: NaN for an all-zero weighting", """
def sharpen(weights, gamma, eps=1e-12):
    p = weights ** gamma.unsqueeze(-1)
    return p / p.sum(-1, keepdim=True)
"""),
    ],
    "test_address": [
        ("no sharpening", """
def address(memory, key, beta, gate, shift_dist, gamma, prev_w):
    return mem.shift(mem.interpolate(mem.content_weighting(memory, key, beta), prev_w, gate), shift_dist)
"""),
        ("sharpen before shift", """
def address(memory, key, beta, gate, shift_dist, gamma, prev_w):
    g = mem.interpolate(mem.content_weighting(memory, key, beta), prev_w, gate)
    return mem.shift(mem.sharpen(g, gamma), shift_dist)
"""),
        ("interpolation roles swapped", """
def address(memory, key, beta, gate, shift_dist, gamma, prev_w):
    g = mem.interpolate(prev_w, mem.content_weighting(memory, key, beta), gate)
    return mem.sharpen(mem.shift(g, shift_dist), gamma)
"""),
        ("no interpolation (content only)", """
def address(memory, key, beta, gate, shift_dist, gamma, prev_w):
    return mem.sharpen(mem.shift(mem.content_weighting(memory, key, beta), shift_dist), gamma)
"""),
        ("shift before interpolation", """
def address(memory, key, beta, gate, shift_dist, gamma, prev_w):
    s = mem.shift(mem.content_weighting(memory, key, beta), shift_dist)
    return mem.sharpen(mem.interpolate(s, prev_w, gate), gamma)
"""),
    ],
    "test_read_head_step": [
        ("beta without softplus", """
def read_head_step(memory, prev_w, raw):
    W = memory.shape[-1]; S = raw.shape[-1] - W - 3
    key, beta = raw[:, :W], raw[:, W]
    gate = torch.sigmoid(raw[:, W + 1])
    s = torch.softmax(raw[:, W + 2: W + 2 + S], dim=-1)
    gamma = 1 + F.softplus(raw[:, W + 2 + S])
    w = mem.ntm_addressing(memory, key, beta, gate, s, gamma, prev_w)
    return mem.read(memory, w), w
"""),
        ("gamma = softplus (without 1 +)", """
def read_head_step(memory, prev_w, raw):
    W = memory.shape[-1]; S = raw.shape[-1] - W - 3
    key, beta = raw[:, :W], F.softplus(raw[:, W])
    gate = torch.sigmoid(raw[:, W + 1])
    s = torch.softmax(raw[:, W + 2: W + 2 + S], dim=-1)
    gamma = F.softplus(raw[:, W + 2 + S])
    w = mem.ntm_addressing(memory, key, beta, gate, s, gamma, prev_w)
    return mem.read(memory, w), w
"""),
        ("shift weights without softmax", """
def read_head_step(memory, prev_w, raw):
    W = memory.shape[-1]; S = raw.shape[-1] - W - 3
    key, beta = raw[:, :W], F.softplus(raw[:, W])
    gate = torch.sigmoid(raw[:, W + 1])
    s = raw[:, W + 2: W + 2 + S]
    gamma = 1 + F.softplus(raw[:, W + 2 + S])
    w = mem.ntm_addressing(memory, key, beta, gate, s, gamma, prev_w)
    return mem.read(memory, w), w
"""),
        ("gate and beta slots swapped", """
def read_head_step(memory, prev_w, raw):
    W = memory.shape[-1]; S = raw.shape[-1] - W - 3
    key, beta = raw[:, :W], F.softplus(raw[:, W + 1])
    gate = torch.sigmoid(raw[:, W])
    s = torch.softmax(raw[:, W + 2: W + 2 + S], dim=-1)
    gamma = 1 + F.softplus(raw[:, W + 2 + S])
    w = mem.ntm_addressing(memory, key, beta, gate, s, gamma, prev_w)
    return mem.read(memory, w), w
"""),
        ("gate without sigmoid (clamped)", """
def read_head_step(memory, prev_w, raw):
    W = memory.shape[-1]; S = raw.shape[-1] - W - 3
    key, beta = raw[:, :W], F.softplus(raw[:, W])
    gate = raw[:, W + 1].clamp(0, 1)
    s = torch.softmax(raw[:, W + 2: W + 2 + S], dim=-1)
    gamma = 1 + F.softplus(raw[:, W + 2 + S])
    w = mem.ntm_addressing(memory, key, beta, gate, s, gamma, prev_w)
    return mem.read(memory, w), w
"""),
    ],
}

# -- Chapter 3 -----------------------------------------------------------------------------------------------------
CH3 = {
    "test_usage_update": [
        ("retention as a sum over heads, not a product", """
def usage_update(prev_usage, prev_write_weights, free_gates, prev_read_weights):
    psi = 1 - (free_gates.unsqueeze(-1) * prev_read_weights).sum(1)
    return (prev_usage + prev_write_weights - prev_usage * prev_write_weights) * psi
"""),
        ("u + w without - u w", """
def usage_update(prev_usage, prev_write_weights, free_gates, prev_read_weights):
    psi = torch.prod(1 - free_gates.unsqueeze(-1) * prev_read_weights, dim=1)
    return (prev_usage + prev_write_weights) * psi
"""),
        ("free gates ignored", """
def usage_update(prev_usage, prev_write_weights, free_gates, prev_read_weights):
    psi = torch.prod(1 - prev_read_weights, dim=1)
    return (prev_usage + prev_write_weights - prev_usage * prev_write_weights) * psi
"""),
        ("retention not applied", """
def usage_update(prev_usage, prev_write_weights, free_gates, prev_read_weights):
    return prev_usage + prev_write_weights - prev_usage * prev_write_weights
"""),
        ("product over slots instead of heads", """
def usage_update(prev_usage, prev_write_weights, free_gates, prev_read_weights):
    psi = torch.prod(1 - free_gates.unsqueeze(-1) * prev_read_weights, dim=-1, keepdim=True)
    return (prev_usage + prev_write_weights - prev_usage * prev_write_weights) * psi.mean(1)
"""),
    ],
    "test_allocation_weighting": [
        ("no sort: slots in index order", """
def allocation_weighting(usage):
    shifted = torch.cat([torch.ones_like(usage[:, :1]), usage[:, :-1]], dim=-1)
    return (1 - usage) * torch.cumprod(shifted, dim=-1)
"""),
        ("sorted by descending usage", """
def allocation_weighting(usage):
    su, phi = torch.sort(usage, dim=-1, descending=True, stable=True)
    shifted = torch.cat([torch.ones_like(su[:, :1]), su[:, :-1]], dim=-1)
    return torch.zeros_like(usage).scatter(-1, phi, (1 - su) * torch.cumprod(shifted, dim=-1))
"""),
        ("inclusive cumprod (off by one)", """
def allocation_weighting(usage):
    su, phi = torch.sort(usage, dim=-1, stable=True)
    return torch.zeros_like(usage).scatter(-1, phi, (1 - su) * torch.cumprod(su, dim=-1))
"""),
        ("left in sorted order (not scattered back)", """
def allocation_weighting(usage):
    su, phi = torch.sort(usage, dim=-1, stable=True)
    shifted = torch.cat([torch.ones_like(su[:, :1]), su[:, :-1]], dim=-1)
    return (1 - su) * torch.cumprod(shifted, dim=-1)
"""),
        ("gathered instead of scattered back", """
def allocation_weighting(usage):
    su, phi = torch.sort(usage, dim=-1, stable=True)
    shifted = torch.cat([torch.ones_like(su[:, :1]), su[:, :-1]], dim=-1)
    return ((1 - su) * torch.cumprod(shifted, dim=-1)).gather(-1, phi)
"""),
    ],
    "test_temporal_link": [
        ("precedence: p + w (no decay)", """
def precedence_update(prev_precedence, write_weights):
    return prev_precedence + write_weights
"""),
        ("precedence decays slot by slot, not by the total write", """
def precedence_update(prev_precedence, write_weights):
    return (1 - write_weights) * prev_precedence + write_weights
"""),
        ("link transposed (w_j p_i)", """
def link_update(prev_link, prev_precedence, write_weights):
    w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)
    link = (1 - w_i - w_j) * prev_link + prev_precedence.unsqueeze(-1) * w_j
    return link * (1 - torch.eye(link.shape[-1], dtype=link.dtype))
"""),
        ("diagonal not zeroed", """
def link_update(prev_link, prev_precedence, write_weights):
    w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)
    return (1 - w_i - w_j) * prev_link + w_i * prev_precedence.unsqueeze(-2)
"""),
        ("old links never decay", """
def link_update(prev_link, prev_precedence, write_weights):
    w_i = write_weights.unsqueeze(-1)
    link = prev_link + w_i * prev_precedence.unsqueeze(-2)
    return link * (1 - torch.eye(link.shape[-1], dtype=link.dtype))
"""),
        ("decay (1 - w_i) only", """
def link_update(prev_link, prev_precedence, write_weights):
    w_i = write_weights.unsqueeze(-1)
    link = (1 - w_i) * prev_link + w_i * prev_precedence.unsqueeze(-2)
    return link * (1 - torch.eye(link.shape[-1], dtype=link.dtype))
"""),
    ],
    "test_read_modes": [
        ("forward and backward swapped", """
def read_weighting(link, prev_read_weights, content, read_modes):
    fwd = torch.einsum("bij,brj->bri", link, prev_read_weights)
    bwd = torch.einsum("bij,bri->brj", link, prev_read_weights)
    pi = read_modes.unsqueeze(-1)
    return pi[:, :, 0] * fwd + pi[:, :, 1] * content + pi[:, :, 2] * bwd
"""),
        ("modes read in the order (content, backward, forward)", """
def read_weighting(link, prev_read_weights, content, read_modes):
    fwd = torch.einsum("bij,brj->bri", link, prev_read_weights)
    bwd = torch.einsum("bij,bri->brj", link, prev_read_weights)
    pi = read_modes.unsqueeze(-1)
    return pi[:, :, 1] * bwd + pi[:, :, 0] * content + pi[:, :, 2] * fwd
"""),
        ("content mode left out", """
def read_weighting(link, prev_read_weights, content, read_modes):
    fwd = torch.einsum("bij,brj->bri", link, prev_read_weights)
    bwd = torch.einsum("bij,bri->brj", link, prev_read_weights)
    pi = read_modes.unsqueeze(-1)
    return pi[:, :, 0] * bwd + pi[:, :, 2] * fwd
"""),
        ("the first head's weighting for every head", """
def read_weighting(link, prev_read_weights, content, read_modes):
    w = prev_read_weights[:, :1].expand_as(prev_read_weights)
    fwd = torch.einsum("bij,brj->bri", link, w)
    bwd = torch.einsum("bij,bri->brj", link, w)
    pi = read_modes.unsqueeze(-1)
    return pi[:, :, 0] * bwd + pi[:, :, 1] * content + pi[:, :, 2] * fwd
"""),
    ],
}

# -- Chapter 4 -----------------------------------------------------------------------------------------------------
CH4 = {
    "test_position_encoding": [
        ("0-based indices", """
def position_encoding(J, d):
    j = torch.arange(J, dtype=torch.float32).unsqueeze(1)
    k = torch.arange(d, dtype=torch.float32).unsqueeze(0)
    return (1 - j / J) - (k / d) * (1 - 2 * j / J)
"""),
        ("transposed: [d, J]", """
def position_encoding(J, d):
    j = torch.arange(1, J + 1, dtype=torch.float32).unsqueeze(0)
    k = torch.arange(1, d + 1, dtype=torch.float32).unsqueeze(1)
    return (1 - j / J) - (k / d) * (1 - 2 * j / J)
"""),
        ("sign of the second term flipped", """
def position_encoding(J, d):
    j = torch.arange(1, J + 1, dtype=torch.float32).unsqueeze(1)
    k = torch.arange(1, d + 1, dtype=torch.float32).unsqueeze(0)
    return (1 - j / J) + (k / d) * (1 - 2 * j / J)
"""),
        ("J and d swapped in the fractions", """
def position_encoding(J, d):
    j = torch.arange(1, J + 1, dtype=torch.float32).unsqueeze(1)
    k = torch.arange(1, d + 1, dtype=torch.float32).unsqueeze(0)
    return (1 - j / d) - (k / J) * (1 - 2 * j / d)
"""),
    ],
    "test_memory_hop": [
        ("padding not masked", """
def memory_hop(u, memory_in, memory_out, mask):
    p = torch.softmax(torch.einsum("bd,bnd->bn", u, memory_in), dim=1)
    return u + torch.einsum("bn,bnd->bd", p, memory_out), p
"""),
        ("mask applied after the softmax, not renormalised", """
def memory_hop(u, memory_in, memory_out, mask):
    p = torch.softmax(torch.einsum("bd,bnd->bn", u, memory_in), dim=1) * mask
    return u + torch.einsum("bn,bnd->bd", p, memory_out), p
"""),
        ("returns o instead of u + o", """
def memory_hop(u, memory_in, memory_out, mask):
    s = torch.einsum("bd,bnd->bn", u, memory_in).masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=1)
    return torch.einsum("bn,bnd->bd", p, memory_out), p
"""),
        ("reads the input memory instead of the output memory", """
def memory_hop(u, memory_in, memory_out, mask):
    s = torch.einsum("bd,bnd->bn", u, memory_in).masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=1)
    return u + torch.einsum("bn,bnd->bd", p, memory_in), p
"""),
        ("softmax over the batch", """
def memory_hop(u, memory_in, memory_out, mask):
    s = torch.einsum("bd,bnd->bn", u, memory_in).masked_fill(~mask, float("-inf"))
    p = torch.nan_to_num(torch.softmax(s, dim=0))
    return u + torch.einsum("bn,bnd->bd", p, memory_out), p
"""),
    ],
    "test_adjacent_memn2n": [
        ("output embedding of hop k is E_(k-1) too (no adjacent tying)", """
def adjacent_memn2n(stories, mask, queries, embeddings, encoding):
    u = M.sentence_representation(queries, embeddings[0], encoding)
    att = []
    for k in range(1, len(embeddings)):
        m = M.sentence_representation(stories, embeddings[k - 1], encoding)
        u, p = M.memory_hop(u, m, m, mask)
        att.append(p)
    return u @ embeddings[-1].T, torch.stack(att, dim=1)
"""),
        ("answer projection with E_0", """
def adjacent_memn2n(stories, mask, queries, embeddings, encoding):
    u = M.sentence_representation(queries, embeddings[0], encoding)
    att = []
    for k in range(1, len(embeddings)):
        m = M.sentence_representation(stories, embeddings[k - 1], encoding)
        c = M.sentence_representation(stories, embeddings[k], encoding)
        u, p = M.memory_hop(u, m, c, mask)
        att.append(p)
    return u @ embeddings[0].T, torch.stack(att, dim=1)
"""),
        ("u not carried to the next hop", """
def adjacent_memn2n(stories, mask, queries, embeddings, encoding):
    u0 = M.sentence_representation(queries, embeddings[0], encoding)
    att, u = [], u0
    for k in range(1, len(embeddings)):
        m = M.sentence_representation(stories, embeddings[k - 1], encoding)
        c = M.sentence_representation(stories, embeddings[k], encoding)
        u, p = M.memory_hop(u0, m, c, mask)
        att.append(p)
    return u @ embeddings[-1].T, torch.stack(att, dim=1)
"""),
        ("no position encoding (bag of words)", """
def adjacent_memn2n(stories, mask, queries, embeddings, encoding):
    ones = torch.ones_like(encoding)
    u = M.sentence_representation(queries, embeddings[0], ones)
    att = []
    for k in range(1, len(embeddings)):
        m = M.sentence_representation(stories, embeddings[k - 1], ones)
        c = M.sentence_representation(stories, embeddings[k], ones)
        u, p = M.memory_hop(u, m, c, mask)
        att.append(p)
    return u @ embeddings[-1].T, torch.stack(att, dim=1)
"""),
        ("input and output embeddings swapped", """
def adjacent_memn2n(stories, mask, queries, embeddings, encoding):
    u = M.sentence_representation(queries, embeddings[0], encoding)
    att = []
    for k in range(1, len(embeddings)):
        m = M.sentence_representation(stories, embeddings[k], encoding)
        c = M.sentence_representation(stories, embeddings[k - 1], encoding)
        u, p = M.memory_hop(u, m, c, mask)
        att.append(p)
    return u @ embeddings[-1].T, torch.stack(att, dim=1)
"""),
    ],
}

# -- Chapter 5 -----------------------------------------------------------------------------------------------------
CH5 = {
    "test_key_hashing": [
        ("index repeats a key that holds a word twice", """
def inverted_index(keys):
    index = {}
    for i, key in enumerate(keys):
        for word in key:
            index.setdefault(word, []).append(i)
    return index
"""),
        ("frequency <= F instead of < F", """
def key_hashing(question, index, max_frequency, stop_words=STOP_WORDS):
    selected = set()
    for word in question:
        if word not in stop_words and len(index.get(word, [])) <= max_frequency:
            selected.update(index.get(word, []))
    return sorted(selected)
"""),
        ("stop words not skipped", """
def key_hashing(question, index, max_frequency, stop_words=STOP_WORDS):
    selected = set()
    for word in question:
        if len(index.get(word, [])) < max_frequency:
            selected.update(index.get(word, []))
    return sorted(selected)
"""),
        ("ids in the order found, not sorted", """
def key_hashing(question, index, max_frequency, stop_words=STOP_WORDS):
    out = []
    for word in question:
        if word not in stop_words and len(index.get(word, [])) < max_frequency:
            out += [i for i in index.get(word, []) if i not in out]
    return out
"""),
        ("ids repeated", """
def key_hashing(question, index, max_frequency, stop_words=STOP_WORDS):
    out = []
    for word in question:
        if word not in stop_words and len(index.get(word, [])) < max_frequency:
            out += index.get(word, [])
    return sorted(out)
"""),
    ],
    "test_key_addressing": [
        ("no mask", """
def key_addressing(query, keys, key_mask):
    return torch.softmax(torch.einsum("bd,bkd->bk", query, keys), dim=-1)
"""),
        ("mask after the softmax, not renormalised", """
def key_addressing(query, keys, key_mask):
    return torch.softmax(torch.einsum("bd,bkd->bk", query, keys), dim=-1) * key_mask
"""),
        ("-inf fill: NaN for a row without keys", """
def key_addressing(query, keys, key_mask):
    s = torch.einsum("bd,bkd->bk", query, keys).masked_fill(~key_mask, float("-inf"))
    return torch.softmax(s, dim=-1)
"""),
        ("softmax over the batch", """
def key_addressing(query, keys, key_mask):
    s = torch.einsum("bd,bkd->bk", query, keys).masked_fill(~key_mask, torch.finfo(query.dtype).min)
    return torch.softmax(s, dim=0) * key_mask
"""),
    ],
    "test_value_reading": [
        ("mean of the values", """
def value_reading(weights, values):
    return values.mean(1)
"""),
        ("weighted sum over the feature dimension", """
def value_reading(weights, values):
    return (weights.unsqueeze(-1) * values).sum(-1)
"""),
        ("the first batch element's values for everyone", """
def value_reading(weights, values):
    return weights @ values[0]
"""),
    ],
    "test_hop_update": [
        ("row-vector convention: (q + o) R", """
def hop_update(query, read, R):
    return (query + read) @ R
"""),
        ("o left out: R q", """
def hop_update(query, read, R):
    return query @ R.T
"""),
        ("q + R o", """
def hop_update(query, read, R):
    return query + read @ R.T
"""),
        ("no R: q + o", """
def hop_update(query, read, R):
    return query + read
"""),
    ],
}

# -- Chapter 6 -----------------------------------------------------------------------------------------------------
_TOPK_HEAD = '''
def topk_read(memory, keys, strengths, k):
    key_norm = torch.sqrt((keys * keys).sum(-1) + EPS)
    mem_norm = torch.sqrt((memory * memory).sum(-1) + EPS)
    sim = torch.einsum("brw,bnw->brn", keys, memory) / (key_norm.unsqueeze(-1) * mem_norm.unsqueeze(1))
'''
_TOPK_TAIL = '''
    b, r, _ = indices.shape
    rows = memory.gather(1, indices.reshape(b, r * k, 1).expand(b, r * k, memory.shape[-1])).view(b, r, k, -1)
    return torch.einsum("brk,brkw->brw", weights, rows), indices, weights
'''
CH6 = {
    "test_topk_read": [
        ("dot product instead of cosine", '''
def topk_read(memory, keys, strengths, k):
    sim = torch.einsum("brw,bnw->brn", keys, memory)
    top, indices = sim.topk(k, dim=-1)
    weights = torch.softmax(strengths.unsqueeze(-1) * top, dim=-1)
''' + _TOPK_TAIL),
        ("dense softmax cut to the top k, not renormalised", _TOPK_HEAD + '''
    dense = torch.softmax(strengths.unsqueeze(-1) * sim, dim=-1)
    weights, indices = dense.topk(k, dim=-1)
''' + _TOPK_TAIL),
        ("the k least similar slots", _TOPK_HEAD + '''
    top, indices = sim.topk(k, dim=-1, largest=False)
    weights = torch.softmax(strengths.unsqueeze(-1) * top, dim=-1)
''' + _TOPK_TAIL),
        ("strengths left out", _TOPK_HEAD + '''
    top, indices = sim.topk(k, dim=-1)
    weights = torch.softmax(top, dim=-1)
''' + _TOPK_TAIL),
    ],
    "test_ivf_index": [
        ("searches every list whatever n_probe", """
def search_ivf(queries, keys, centroids, lists, n_probe, k):
    return (queries @ keys.T).topk(k, dim=-1).indices
"""),
        ("probes the worst lists", """
def search_ivf(queries, keys, centroids, lists, n_probe, k):
    probes = (queries @ centroids.T).topk(n_probe, dim=-1, largest=False).indices
    out = []
    for q, ls in zip(queries, probes):
        cand = torch.cat([lists[int(l)] for l in ls])
        out.append(cand[(keys[cand] @ q).topk(k).indices])
    return torch.stack(out)
"""),
        ("best keys returned in id order, not best first", """
def search_ivf(queries, keys, centroids, lists, n_probe, k):
    probes = (queries @ centroids.T).topk(n_probe, dim=-1).indices
    out = []
    for q, ls in zip(queries, probes):
        cand = torch.cat([lists[int(l)] for l in ls])
        out.append(cand[(keys[cand] @ q).topk(k).indices].sort().values)
    return torch.stack(out)
"""),
        ("keys assigned to their farthest centroid", """
def build_ivf(keys, centroids):
    assign = (keys @ centroids.T).argmin(-1)
    return [torch.nonzero(assign == l).squeeze(-1) for l in range(centroids.shape[0])]
"""),
        ("only the first n_probe lists, whatever the query", """
def search_ivf(queries, keys, centroids, lists, n_probe, k):
    cand = torch.cat([lists[l] for l in range(n_probe)])
    return cand[(queries @ keys[cand].T).topk(k, dim=-1).indices]
"""),
    ],
    "test_hierarchical_read": [
        ("searches every group whatever n_probe", """
def hierarchical_read(queries, keys, values, centroids, groups, n_probe, k):
    ids = (queries.detach() @ keys.T).topk(k, dim=-1).indices
    w = torch.softmax(torch.einsum("qw,qkw->qk", queries, keys[ids]), dim=-1)
    return torch.einsum("qk,qkv->qv", w, values[ids]), ids, w
"""),
        ("uniform weights over the k found", """
def hierarchical_read(queries, keys, values, centroids, groups, n_probe, k):
    best = (queries @ centroids.T).topk(n_probe, dim=-1).indices
    ids = []
    for q, gs in zip(queries.detach(), best):
        cand = torch.cat([groups[int(g)] for g in gs])
        ids.append(cand[(keys[cand] @ q).topk(k).indices])
    ids = torch.stack(ids)
    w = torch.full(ids.shape, 1.0 / k, dtype=queries.dtype)
    return torch.einsum("qk,qkv->qv", w, values[ids]), ids, w
"""),
        ("reads the keys instead of the values", """
def hierarchical_read(queries, keys, values, centroids, groups, n_probe, k):
    best = (queries @ centroids.T).topk(n_probe, dim=-1).indices
    ids = []
    for q, gs in zip(queries.detach(), best):
        cand = torch.cat([groups[int(g)] for g in gs])
        ids.append(cand[(keys[cand] @ q).topk(k).indices])
    ids = torch.stack(ids)
    w = torch.softmax(torch.einsum("qw,qkw->qk", queries, keys[ids]), dim=-1)
    return torch.einsum("qk,qkw->qw", w, keys[ids])[:, : values.shape[-1]], ids, w
"""),
        ("queries detached: no gradient", """
def hierarchical_read(queries, keys, values, centroids, groups, n_probe, k):
    queries = queries.detach()
    best = (queries @ centroids.T).topk(n_probe, dim=-1).indices
    ids = []
    for q, gs in zip(queries, best):
        cand = torch.cat([groups[int(g)] for g in gs])
        ids.append(cand[(keys[cand] @ q).topk(k).indices])
    ids = torch.stack(ids)
    w = torch.softmax(torch.einsum("qw,qkw->qk", queries, keys[ids]), dim=-1)
    return torch.einsum("qk,qkv->qv", w, values[ids]), ids, w
"""),
        ("cosine instead of inner product for the weights", """
def hierarchical_read(queries, keys, values, centroids, groups, n_probe, k):
    best = (queries @ centroids.T).topk(n_probe, dim=-1).indices
    ids = []
    for q, gs in zip(queries.detach(), best):
        cand = torch.cat([groups[int(g)] for g in gs])
        ids.append(cand[(keys[cand] @ q).topk(k).indices])
    ids = torch.stack(ids)
    kn = keys[ids] / keys[ids].norm(dim=-1, keepdim=True)
    qn = queries / queries.norm(dim=-1, keepdim=True)
    w = torch.softmax(torch.einsum("qw,qkw->qk", qn, kn), dim=-1)
    return torch.einsum("qk,qkv->qv", w, values[ids]), ids, w
"""),
    ],
}

WRONG_ANSWERS = {
    "01_memory_as_attention": CH1,
    "02_ntm": CH2,
    "03_dnc": CH3,
    "04_memn2n": CH4,
    "05_kv_memnn": CH5,
    "06_memory_at_scale": CH6,
}
