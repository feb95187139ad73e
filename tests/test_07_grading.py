"""Chapter 7 grading.

Fast part (no kernel, no nbgrader): each graded test cell passes on the solution and fails on the stub and on
plausible wrong answers, executed straight from the jupytext source.

nbgrader part (the course's own grader, as ``mem-tutorial autograde``): the solution earns every automatic point and
leaves the written answer to the instructor, the stub earns none and fails only in the test cells, the wrong
answers (combined in lean submissions) lose only their own exercise's points, calling the library earns nothing,
and a deleted test cell still runs.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "07_memory_for_language_models"
SOURCE = ROOT / "solutions" / CHAPTER / "memory_for_language_models.py"

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
EXERCISES = ["knn_distribution", "interpolate", "build_datastore", "rag_prompt", "lrua_write"]
TESTS = {e: ["test_" + e] for e in EXERCISES}


def _stub(source: str) -> str:
    return re.sub(r"### BEGIN SOLUTION.*?### END SOLUTION", "raise NotImplementedError()", source, flags=re.S)


def _replace_solution(exercise: str, new_body: str) -> str:
    src = CELLS[exercise]
    start, end = src.index("### BEGIN SOLUTION"), src.index("### END SOLUTION") + len("### END SOLUTION")
    return src[:start] + textwrap.indent(textwrap.dedent(new_body).strip("\n") + "\n", "    ").lstrip() + src[end:]


def _run(exercise: str, solution_source: str) -> None:
    ns: dict = {}
    exec(compile(SETUP.replace("seed_everything(0)", "seed_everything(0, threads=None)"), "setup", "exec"), ns)
    exec(compile(solution_source, exercise, "exec"), ns)
    exec(compile(CELLS["test_" + exercise], "test_" + exercise, "exec"), ns)


WRONG_BODIES = {
    "knn_distribution": {
        "no_temperature": """
w = torch.softmax(-distances, dim=-1)
return torch.zeros(distances.shape[0], vocab_size, dtype=w.dtype).scatter_add(-1, values.long(), w)
""",
        "farthest_most_likely": """
w = torch.softmax(distances / temperature, dim=-1)
return torch.zeros(distances.shape[0], vocab_size, dtype=w.dtype).scatter_add(-1, values.long(), w)
""",
        "scatter_overwrites_duplicates": """
w = torch.softmax(-distances / temperature, dim=-1)
return torch.zeros(distances.shape[0], vocab_size, dtype=w.dtype).scatter(-1, values.long(), w)
""",
        "inverse_distance": """
w = 1 / (distances + 1e-3)
w = w / w.sum(-1, keepdim=True)
return torch.zeros(distances.shape[0], vocab_size, dtype=w.dtype).scatter_add(-1, values.long(), w)
""",
        "calls_library": """
from mem_tutorial.memory.knnlm import knn_distribution as lib
return lib(distances, values, vocab_size, temperature)
""",
    },
    "interpolate": {
        "lambda_swapped": "return lam * p_lm + (1 - lam) * p_knn",
        "product_of_experts": """
p = p_knn ** lam * p_lm ** (1 - lam)
return p / p.sum(-1, keepdim=True)
""",
    },
    "build_datastore": {
        "keys_shifted": """
real = tokens[:, 1:] != pad
return hidden[:, 1:][real], tokens[:, 1:][real]
""",
        "value_is_current_token": """
real = tokens[:, 1:] != pad
return hidden[:, :-1][real], tokens[:, :-1][real]
""",
        "padding_kept": """
return hidden[:, :-1].reshape(-1, hidden.shape[-1]), tokens[:, 1:].reshape(-1)
""",
        "pad_id_ignored": """
real = tokens[:, 1:] != 0
return hidden[:, :-1][real], tokens[:, 1:][real]
""",
    },
    "rag_prompt": {
        "best_first": """
order = sorted(range(len(facts)), key=lambda i: -float(scores[i]))[:k]
return " ".join([f"fact : {facts[i]}" for i in order] + [f"question : {question} answer :"])
""",
        "ignores_scores": """
return " ".join([f"fact : {f}" for f in facts[:k]] + [f"question : {question} answer :"])
""",
        "no_answer_cue": """
order = sorted(range(len(facts)), key=lambda i: -float(scores[i]))[:k]
return " ".join([f"fact : {facts[i]}" for i in reversed(order)] + [f"question : {question}"])
""",
    },
    "lrua_write": {
        "most_used_slot": """
nth = prev_usage.topk(n, dim=-1).values[..., -1:]
lu = (prev_usage >= nth).to(prev_read.dtype)
g = torch.sigmoid(alpha).unsqueeze(-1)
return g * prev_read + (1 - g) * lu.unsqueeze(1)
""",
        "no_sigmoid": """
nth = prev_usage.topk(n, dim=-1, largest=False).values[..., -1:]
lu = (prev_usage <= nth).to(prev_read.dtype)
g = alpha.unsqueeze(-1)
return g * prev_read + (1 - g) * lu.unsqueeze(1)
""",
        "gates_swapped": """
nth = prev_usage.topk(n, dim=-1, largest=False).values[..., -1:]
lu = (prev_usage <= nth).to(prev_read.dtype)
g = torch.sigmoid(alpha).unsqueeze(-1)
return (1 - g) * prev_read + g * lu.unsqueeze(1)
""",
        "soft_least_used": """
lu = torch.softmax(-prev_usage, -1)
g = torch.sigmoid(alpha).unsqueeze(-1)
return g * prev_read + (1 - g) * lu.unsqueeze(1)
""",
    },
}
WRONG_CASES = [(e, n) for e, table in WRONG_BODIES.items() for n in sorted(table)]


@pytest.mark.parametrize("exercise", EXERCISES)
def test_solution_passes(exercise):
    _run(exercise, CELLS[exercise])


@pytest.mark.parametrize("exercise", EXERCISES)
def test_stub_fails(exercise):
    with pytest.raises(NotImplementedError):
        _run(exercise, _stub(CELLS[exercise]))


@pytest.mark.parametrize("exercise,name", WRONG_CASES, ids=[f"{e}-{n}" for e, n in WRONG_CASES])
def test_wrong_answers_fail(exercise, name):
    with pytest.raises(AssertionError):
        _run(exercise, _replace_solution(exercise, WRONG_BODIES[exercise][name]))


# ------------------------------------------------------------------------------ the real round trip (nbgrader)
POINTS = {"test_knn_distribution": 3, "test_interpolate": 2, "test_build_datastore": 3, "test_rag_prompt": 3,
          "test_lrua_write": 3}
WRONG = {  # graded through nbgrader: one per exercise, combined into lean submissions by the harness
    "knn_no_temperature": ("knn_distribution", "no_temperature"),
    "interpolate_swapped": ("interpolate", "lambda_swapped"),
    "datastore_keys_shifted": ("build_datastore", "keys_shifted"),
    "rag_best_first": ("rag_prompt", "best_first"),
    "lrua_most_used": ("lrua_write", "most_used_slot"),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    harness = pytest.importorskip("nbgrader_harness")
    course = harness.ScratchCourse(tmp_path_factory.mktemp("course07"), CHAPTER)
    solved = course.solved_notebook()
    course.submit("solution", solved)
    course.submit("stub", course.student_notebook())
    wrong = {name: (gid, _replace_solution(gid, WRONG_BODIES[gid][case])) for name, (gid, case) in WRONG.items()}
    course.submit_wrong(solved, wrong, TESTS)
    lib = harness.with_solution(solved, "knn_distribution",
                                _replace_solution("knn_distribution", WRONG_BODIES["knn_distribution"]["calls_library"]))
    course.submit("calls_library", harness.lean(lib))
    course.submit("deleted_test", harness.without_cell(harness.lean(course.student_notebook()), "test_lrua_write"))
    return course, course.autograde()


def test_point_layout(graded):
    course, _ = graded
    assert course.grade_ids("auto") == POINTS
    assert course.grade_ids("manual") == {"written_knnlm_vs_rag": 3}


def test_solution_full_points(graded):
    course, scores = graded
    course.assert_solution_full(scores, 14)


def test_stub_zero(graded):
    course, scores = graded
    course.assert_stub_zero(scores)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answer_loses_only_its_exercise(graded, name):
    course, scores = graded
    course.assert_loses_only(scores, name)


def test_calling_the_library_earns_nothing(graded):
    _, scores = graded
    by_cell = scores["calls_library"].by_cell
    assert by_cell["test_knn_distribution"] == 0
    assert all(by_cell[g] == p for g, p in POINTS.items() if g != "test_knn_distribution")


def test_deleted_test_cell_is_restored_and_run(graded):
    course, scores = graded
    course.assert_deleted_test_runs(scores, "test_lrua_write")
