"""Chapter 7's experiments on the tiny world: train the LM on world A, measure kNN-LM and retrieve-then-generate
on world B (text the LM never trained on). Used by the notebook and by ``benchmarks/ch7.py``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from mem_tutorial.data import tinyworld as tw
from mem_tutorial.memory import knnlm
from mem_tutorial.memory.index import ExactIndex, IVFIndex
from mem_tutorial.memory.tfidf import TfidfMemory
from mem_tutorial.models.tinylm import LMConfig, TinyLM, Vocab, next_token_probs, train_lm
from mem_tutorial.train import load_checkpoint, save_checkpoint

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
SIZES = {
    "fast": dict(model=dict(d_model=64, n_layers=2, n_heads=4, d_ff=256), steps=600, batch_size=32, lr=3e-3),
    "full": dict(model=dict(d_model=128, n_layers=4, n_heads=4, d_ff=512), steps=2000, batch_size=32, lr=2e-3),
}
#: Seeds of the renderings of world B: the datastore's text, the validation text (choosing λ and T), the test text.
STORE_SEEDS, VALID_SEED, TEST_SEED = (100, 101), 300, 200


def vocab() -> Vocab:
    return Vocab(tw.vocabulary())


def worlds() -> tuple[tw.World, tw.World]:
    return tw.make_world(0), tw.make_world(1)


def sampler(world: tw.World):
    return lambda rng, n: tw.training_sequences(world, rng, n)


def new_lm(size: str, v: Vocab) -> TinyLM:
    return TinyLM(LMConfig(len(v), **SIZES[size]["model"]))


def train_world_lm(size: str = "fast", seed: int = 0, steps: int | None = None, log_every: int = 0, device=None):
    """Train the LM of ``size`` on world A from scratch: (model, vocab, losses)."""
    torch.manual_seed(seed)
    v = vocab()
    model = new_lm(size, v).to(device or "cpu")
    cfg = SIZES[size]
    losses = train_lm(model, v, sampler(worlds()[0]), steps or cfg["steps"], cfg["batch_size"], cfg["lr"], seed=seed,
                      log_every=log_every)
    return model, v, losses


def checkpoint_path(size: str) -> Path:
    return CHECKPOINTS / f"tinylm_{size}.pt"


def save_lm(model: TinyLM, size: str, losses=None) -> Path:
    return save_checkpoint(checkpoint_path(size), model, {"size": size, **SIZES[size]["model"]},
                           losses=[round(x, 5) for x in (losses or [])])


def load_lm(size: str = "fast") -> tuple[TinyLM, Vocab]:
    v = vocab()
    model = new_lm(size, v)
    load_checkpoint(checkpoint_path(size), model)
    return model.eval(), v


# ------------------------------------------------------------------------------------------------ texts
def paragraphs(world: tw.World, seed: int, people=None) -> tuple[list[list[str]], list[str]]:
    """One rendering (random sentence order and templates, seeded) of each person's paragraph: (texts, owners)."""
    rng = random.Random(seed)
    people = list(people or world.people)
    return [tw.render_person(world, p, rng) for p in people], people


def world_datastore(model, v, world: tw.World, seeds=STORE_SEEDS, store=None, people=None) -> knnlm.Datastore:
    """Entries from ``len(seeds)`` renderings of every person's paragraph, owner = the person."""
    for s in seeds:
        texts, owners = paragraphs(world, s, people)
        store = knnlm.datastore_from_texts(model, v, texts, owners, store)
    return store


def text_perplexity(model, v, texts, store=None, lam=0.0, k=8, temperature=1.0) -> float:
    return knnlm.perplexity(knnlm.token_log_probs(model, v.batch(texts), store, lam, k, temperature))


def tune(model, v, store, texts, lams=(0.25, 0.5, 0.75, 0.9), temps=(0.1, 1.0, 10.0), k=8) -> tuple[float, float]:
    """(λ, T) with the lowest perplexity of ``texts`` (a validation rendering, not the test text)."""
    best = min(((text_perplexity(model, v, texts, store, lam, k, t), lam, t) for lam in lams for t in temps))
    return best[1], best[2]


# ------------------------------------------------------------------------------------------------ answers
def closed_book_prompt(person: str, relation: str) -> list[str]:
    return f"question : {tw.question(person, relation)} answer :".split()


def completion_prompt(template: str, person: str) -> list[str]:
    """The words of a paragraph template up to its value: "{p} lives in {v} ." -> [person, "lives", "in"]."""
    return template.split("{v}")[0].format(p=person).split()


def greedy(model, v, prompts, store=None, lam=0.0, k=8, temperature=1.0) -> list[str]:
    """The most probable next token of each prompt under the LM (or the kNN-LM when ``store`` is given)."""
    p, h = next_token_probs(model, v, prompts)
    if store is not None and lam > 0:
        p = knnlm.knn_lm_probs(p, h, store, lam, k, temperature)
    return v.decode(p.argmax(-1))


def memory_of(world: tw.World) -> TfidfMemory:
    """The text memory of a world: one fact sentence per (person, relation)."""
    return TfidfMemory([tw.fact_sentence(p, r, world.value(p, r)) for p in world.people for r in tw.RELATIONS])


def rag_answers(model, v, memory: TfidfMemory, questions: list[tuple[str, str]], k: int = 2):
    """Retrieve the top-k facts for each question, build the prompt, answer greedily: (answers, retrieved)."""
    texts = [tw.question(p, r) for p, r in questions]
    _, got = memory.retrieve(texts, k)
    prompts = [tw.rag_prompt_text(list(reversed(facts)), q).split() for facts, q in zip(got, texts)]
    return greedy(model, v, prompts), got


def exact_match(pred, gold) -> float:
    return sum(a == b for a, b in zip(pred, gold)) / len(gold)


def evaluate_all(model, v, n_edit: int = 20, seed: int = 0) -> dict:
    """Every Chapter 7 language-model figure on world B (see benchmarks/ch7.py)."""
    A, B = worlds()
    res: dict = {}
    store = world_datastore(model, v, B)
    valid, _ = paragraphs(B, VALID_SEED)
    test, _ = paragraphs(B, TEST_SEED)
    lam, temp = tune(model, v, store, valid)
    res["lambda"], res["temperature"], res["datastore_entries"] = lam, temp, len(store)
    res["ppl_B_lm"] = text_perplexity(model, v, test)
    res["ppl_B_knnlm"] = text_perplexity(model, v, test, store, lam, 8, temp)
    res["ppl_B_reduction"] = 1 - res["ppl_B_knnlm"] / res["ppl_B_lm"]
    a_text, _ = paragraphs(A, TEST_SEED)
    res["ppl_A_lm"] = text_perplexity(model, v, a_text)
    res["ppl_A_knnlm_with_B_store"] = text_perplexity(model, v, a_text, store, lam, 8, temp)
    # edits: a new city for n_edit people of B, written into the datastore only
    rng = random.Random(seed)
    edited = rng.sample(list(B.people), n_edit)
    B2 = B
    for p in edited:
        B2 = B2.with_fact(p, "city", rng.choice([c for c in tw.VALUES["city"] if c != B.value(p, "city")]))
    for p in edited:
        store.remove_owner(p)
    world_datastore(model, v, B2, store=store, people=edited)
    prompts = [completion_prompt(t, p) for p in edited for t in tw.TEMPLATES["city"]]
    gold = [B2.value(p, "city") for p in edited for _ in tw.TEMPLATES["city"]]
    res["edit_follow_datastore"] = exact_match(greedy(model, v, prompts, store, lam, 8, temp), gold)
    res["edit_follow_old_fact"] = exact_match(greedy(model, v, prompts, store, lam, 8, temp),
                                              [B.value(p, "city") for p in edited for _ in tw.TEMPLATES["city"]])
    store = world_datastore(model, v, B)  # back to the unedited world
    # question answering about world B
    qs = [(p, r) for p in B.people for r in tw.RELATIONS]
    gold = [B.value(p, r) for p, r in qs]
    closed = [closed_book_prompt(p, r) for p, r in qs]
    res["qa_B_lm_alone"] = exact_match(greedy(model, v, closed), gold)
    res["qa_B_knnlm"] = exact_match(greedy(model, v, closed, store, lam, 8, temp), gold)
    mem = memory_of(B)
    answers, got = rag_answers(model, v, mem, qs, k=1)
    res["qa_B_rag"] = exact_match(answers, gold)
    res["qa_B_rag_top2"] = exact_match(rag_answers(model, v, mem, qs, k=2)[0], gold)
    res["retrieval_top1_correct"] = exact_match([g[0] for g in got], [tw.fact_sentence(p, r, B.value(p, r)) for p, r in qs])
    res["qa_A_lm_alone"] = exact_match(greedy(model, v, [closed_book_prompt(p, r) for p in A.people for r in tw.RELATIONS]),
                                       [A.value(p, r) for p in A.people for r in tw.RELATIONS])
    res["chance"] = sum(1 / len(tw.VALUES[r]) for r in tw.RELATIONS) / len(tw.RELATIONS)
    # wrong facts in the memory: the LM repeats them
    wrong = B
    for p in B.people:
        wrong = wrong.with_fact(p, "city", tw.VALUES["city"][(tw.VALUES["city"].index(B.value(p, "city")) + 1) % 16])
    cq = [(p, "city") for p in B.people]
    ans, _ = rag_answers(model, v, memory_of(wrong), cq, k=1)
    res["qa_wrong_fact_follows_memory"] = exact_match(ans, [wrong.value(p, "city") for p, _ in cq])
    res["qa_wrong_fact_true_answer"] = exact_match(ans, [B.value(p, "city") for p, _ in cq])
    res.update(search_cost(store))
    return {k: (round(x, 4) if isinstance(x, float) else x) for k, x in res.items()}


def search_cost(store: knnlm.Datastore, sizes=(10**3, 10**4, 10**5), n_queries: int = 256, seed: int = 0) -> dict:
    """CPU ms per query token of the datastore search as it grows (the real keys plus noisy copies of them)."""
    g = torch.Generator().manual_seed(seed)
    keys = store.keys
    out = {}
    for n in sizes:
        reps = -(-n // keys.shape[0])
        big = (keys.repeat(reps, 1)[:n] + 0.05 * torch.randn(n, keys.shape[1], generator=g))
        ds_exact, ds_ivf = knnlm.Datastore(), knnlm.Datastore(lambda: IVFIndex(metric="ip", n_probe=4))
        vals = torch.zeros(n, dtype=torch.long)
        q = keys[torch.randint(0, keys.shape[0], (n_queries,), generator=g)]
        for name, ds in (("exact", ds_exact), ("ivf", ds_ivf)):
            ds.add(big, vals)
            ds.search(q[:2], 8)  # builds the index (not timed)
            best = float("inf")
            for _ in range(3):
                t0 = time.thread_time()
                ds.search(q, 8)
                best = min(best, time.thread_time() - t0)
            out[f"ms_per_token_{name}_{n}"] = 1e3 * best / n_queries
    return out


__all__ = ["ExactIndex", "IVFIndex"]
