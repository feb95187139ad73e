"""Chapter 6 grading: the graded test cells pass on the solution and fail on the stub and on common wrong answers.

The exercise and test cells are executed straight from the jupytext source (no kernel, no nbgrader: fast), with
each solution replaced by a wrong variant. The full nbgrader round trip (release, autograde) is covered by the
course harness when it is present (see ``test_chapter_through_nbgrader``).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "solutions" / "06_memory_at_scale" / "memory_at_scale.py"
CHAPTER = "06_memory_at_scale"

jupytext = pytest.importorskip("jupytext")


def _cells():
    nb = jupytext.read(SOURCE)
    by_id, setup = {}, None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if setup is None:
            setup = cell.source
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid:
            by_id[gid] = cell.source
    return setup, by_id


SETUP, CELLS = _cells()


def _stub(source: str) -> str:
    return re.sub(r"### BEGIN SOLUTION.*?### END SOLUTION", "raise NotImplementedError()", source, flags=re.S)


def _run(exercise: str, solution_source: str) -> None:
    """Execute setup, the (possibly replaced) exercise cell and its graded test cell in one namespace."""
    ns: dict = {}
    exec(compile(SETUP.replace("seed_everything(0)", "seed_everything(0, threads=None)"), "setup", "exec"), ns)
    exec(compile(solution_source, exercise, "exec"), ns)
    exec(compile(CELLS["test_" + exercise], "test_" + exercise, "exec"), ns)


def _body(src: str) -> str:
    return textwrap.dedent(src).strip("\n") + "\n"


EXERCISES = ["topk_read", "ivf_index", "hierarchical_read"]


@pytest.mark.parametrize("exercise", EXERCISES)
def test_solution_passes(exercise):
    _run(exercise, CELLS[exercise])


@pytest.mark.parametrize("exercise", EXERCISES)
def test_stub_fails(exercise):
    with pytest.raises(NotImplementedError):
        _run(exercise, _stub(CELLS[exercise]))


def _replace_solution(exercise: str, new_body: str) -> str:
    src = CELLS[exercise]
    start, end = src.index("### BEGIN SOLUTION"), src.index("### END SOLUTION") + len("### END SOLUTION")
    indent = "    "
    return src[:start] + textwrap.indent(_body(new_body), indent).lstrip() + src[end:]


# ---------------------------------------------------------------------------------------------- wrong answers
TOPK_COMMON = """
key_norm = torch.sqrt((keys * keys).sum(-1) + EPS)
mem_norm = torch.sqrt((memory * memory).sum(-1) + EPS)
sim = torch.einsum("brw,bnw->brn", keys, memory) / (key_norm.unsqueeze(-1) * mem_norm.unsqueeze(1))
b, r, n = sim.shape
"""
GATHER = """
flat = indices.reshape(b, r * k, 1).expand(b, r * k, memory.shape[-1])
rows = MEM.gather(1, flat).view(b, r, k, memory.shape[-1])
reads = torch.einsum("brk,brkw->brw", weights, rows)
return reads, indices, weights
"""

TOPK_WRONG = {
    # softmax over all N slots, then keep the top k weights without renormalising them
    "no_renormalisation": TOPK_COMMON + """
full = torch.softmax(strengths.unsqueeze(-1) * sim, dim=-1)
weights, indices = full.topk(k, dim=-1)
""" + GATHER.replace("MEM", "memory"),
    # dot product instead of the cosine similarity
    "dot_product": """
sim = torch.einsum("brw,bnw->brn", keys, memory)
b, r, n = sim.shape
top, indices = sim.topk(k, dim=-1)
weights = torch.softmax(strengths.unsqueeze(-1) * top, dim=-1)
""" + GATHER.replace("MEM", "memory"),
    # key strength ignored
    "no_strength": TOPK_COMMON + """
top, indices = sim.topk(k, dim=-1)
weights = torch.softmax(top, dim=-1)
""" + GATHER.replace("MEM", "memory"),
    # gradients cut: the selected rows are read from a detached memory
    "detached_memory": TOPK_COMMON + """
top, indices = sim.topk(k, dim=-1)
weights = torch.softmax(strengths.unsqueeze(-1) * top, dim=-1)
""" + GATHER.replace("MEM", "memory.detach()"),
    # gradients cut: the weights come from detached similarities (no gradient to keys or strengths)
    "detached_weights": TOPK_COMMON + """
top, indices = sim.detach().topk(k, dim=-1)
weights = torch.softmax(strengths.detach().unsqueeze(-1) * top, dim=-1)
""" + GATHER.replace("MEM", "memory"),
    # least similar slots
    "bottom_k": TOPK_COMMON + """
top, indices = sim.topk(k, dim=-1, largest=False)
weights = torch.softmax(strengths.unsqueeze(-1) * top, dim=-1)
""" + GATHER.replace("MEM", "memory"),
    # calls the library
    "calls_library": """
from mem_tutorial.memory.sparse import topk_read as lib
reads, sw = lib(memory, keys, strengths, k)
return reads, sw.indices, sw.weights
""",
}

IVF_WRONG = {
    "argmin_assignment": ("build_ivf", """
assign = (keys @ centroids.T).argmin(-1)
return [torch.nonzero(assign == l).squeeze(-1) for l in range(centroids.shape[0])]
"""),
    "positions_not_ids": ("search_ivf", """
probes = (queries @ centroids.T).topk(n_probe, dim=-1).indices
out = []
for q, lists_q in zip(queries, probes):
    cand = torch.cat([lists[int(l)] for l in lists_q])
    out.append((keys[cand] @ q).topk(k).indices)
return torch.stack(out)
"""),
    "probes_every_list": ("search_ivf", """
return (queries @ keys.T).topk(k, dim=-1).indices
"""),
    "worst_lists": ("search_ivf", """
probes = (queries @ centroids.T).topk(n_probe, dim=-1, largest=False).indices
out = []
for q, lists_q in zip(queries, probes):
    cand = torch.cat([lists[int(l)] for l in lists_q])
    out.append(cand[(keys[cand] @ q).topk(k).indices])
return torch.stack(out)
"""),
    "one_list_only": ("search_ivf", """
best = (queries @ centroids.T).argmax(-1)
out = []
for q, l in zip(queries, best):
    cand = lists[int(l)]
    kk = min(k, len(cand))
    ids = cand[(keys[cand] @ q).topk(kk).indices]
    out.append(torch.cat([ids, ids[:1].repeat(k - kk)]))
return torch.stack(out)
"""),
    "calls_library": ("search_ivf", """
from mem_tutorial.memory.index import IVFIndex
index = IVFIndex(n_lists=centroids.shape[0], n_probe=n_probe).build(keys)
return index.search(queries, k)[1]
"""),
}

HIER_COMMON = """
best_groups = (queries @ centroids.T).topk(n_probe, dim=-1).indices
ids = []
for q, gs in zip(queries.detach(), best_groups):
    cand = torch.cat([groups[int(g)] for g in gs])
    ids.append(cand[(keys[cand] @ q).topk(k).indices])
ids = torch.stack(ids)
"""
HIER_WRONG = {
    "all_groups": """
ids = (queries.detach() @ keys.T).topk(k, dim=-1).indices
weights = torch.softmax(torch.einsum("qw,qkw->qk", queries, keys[ids]), -1)
return torch.einsum("qk,qkv->qv", weights, values[ids]), ids, weights
""",
    "softmax_over_all": HIER_COMMON + """
full = torch.softmax(queries @ keys.T, -1)
weights = full.gather(-1, ids)
return torch.einsum("qk,qkv->qv", weights, values[ids]), ids, weights
""",
    "cosine_scores": """
qn = queries / queries.norm(dim=-1, keepdim=True)
kn = keys / keys.norm(dim=-1, keepdim=True)
best_groups = (queries @ centroids.T).topk(n_probe, dim=-1).indices
ids = []
for q, gs in zip(qn.detach(), best_groups):
    cand = torch.cat([groups[int(g)] for g in gs])
    ids.append(cand[(kn[cand] @ q).topk(k).indices])
ids = torch.stack(ids)
weights = torch.softmax(torch.einsum("qw,qkw->qk", qn, kn[ids]), -1)
return torch.einsum("qk,qkv->qv", weights, values[ids]), ids, weights
""",
    "no_gradient": HIER_COMMON + """
weights = torch.softmax(torch.einsum("qw,qkw->qk", queries.detach(), keys[ids]), -1)
return torch.einsum("qk,qkv->qv", weights, values[ids]), ids, weights
""",
    "uniform_weights": HIER_COMMON + """
weights = torch.full(ids.shape, 1.0 / k, dtype=queries.dtype) + 0 * queries.sum()
return torch.einsum("qk,qkv->qv", weights, values[ids]), ids, weights
""",
}


@pytest.mark.parametrize("name", sorted(TOPK_WRONG))
def test_topk_read_wrong_answers_fail(name):
    with pytest.raises(AssertionError):
        _run("topk_read", _replace_solution("topk_read", TOPK_WRONG[name]))


def _replace_function(source: str, fn: str, new_body: str) -> str:
    """Replace the solution region inside function ``fn`` of an exercise cell holding several functions."""
    start = source.index(f"def {fn}(")
    b = source.index("### BEGIN SOLUTION", start)
    e = source.index("### END SOLUTION", b) + len("### END SOLUTION")
    return source[:b] + textwrap.indent(_body(new_body), "    ").lstrip() + source[e:]


@pytest.mark.parametrize("name", sorted(IVF_WRONG))
def test_ivf_wrong_answers_fail(name):
    fn, body = IVF_WRONG[name]
    with pytest.raises(AssertionError):
        _run("ivf_index", _replace_function(CELLS["ivf_index"], fn, body))


@pytest.mark.parametrize("name", sorted(HIER_WRONG))
def test_hierarchical_wrong_answers_fail(name):
    with pytest.raises(AssertionError):
        _run("hierarchical_read", _replace_solution("hierarchical_read", HIER_WRONG[name]))


# ------------------------------------------------------------------------------ the real round trip (nbgrader)
POINTS = {"test_topk_read": 4, "test_ivf_index": 4, "test_hierarchical_read": 4}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    harness = pytest.importorskip("nbgrader_harness")
    course = harness.ScratchCourse(tmp_path_factory.mktemp("course06"), CHAPTER)
    solved = course.solved_notebook()
    course.submit("solution", solved)
    course.submit("stub", course.student_notebook())
    fast = harness.lean(solved)  # without the chapter's demo tail: the same grades, less time
    course.submit("wrong_topk", harness.with_solution(
        fast, "topk_read", _replace_solution("topk_read", TOPK_WRONG["detached_memory"])))
    wrong_ivf = harness.with_solution(
        fast, "ivf_index", _replace_function(CELLS["ivf_index"], "search_ivf", IVF_WRONG["probes_every_list"][1]))
    course.submit("wrong_ivf_deleted_test", harness.without_cell(wrong_ivf, "test_hierarchical_read"))
    return course, course.autograde()


def test_point_layout(graded):
    course, _ = graded
    assert course.grade_ids("auto") == POINTS


def test_solution_full_points_stub_zero(graded):
    course, scores = graded
    assert scores["solution"].auto == course.max_auto == 12
    assert scores["stub"].auto == 0
    assert sorted(scores["stub"].errors()) == sorted(POINTS), "the stub must fail only in the graded test cells"


def test_wrong_answers_lose_only_their_exercise_and_deleted_test_runs(graded):
    _, scores = graded
    assert scores["wrong_topk"].by_cell == {"test_topk_read": 0.0, "test_ivf_index": 4.0, "test_hierarchical_read": 4.0}
    s = scores["wrong_ivf_deleted_test"]
    assert s.by_cell == {"test_topk_read": 4.0, "test_ivf_index": 0.0, "test_hierarchical_read": 4.0}
