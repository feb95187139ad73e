"""Chapter 4 through nbgrader: the solution earns every autograded point, the stub none, each plausible wrong
answer loses its own exercise's points only (0- instead of 1-based PE indices, padded memories that receive
attention, broken tying), a deleted test still runs, calling the library earns nothing."""

import os
from pathlib import Path

import pytest

from nbgrader_harness import ScratchCourse, lean, with_solution, without_cell

CHAPTER = "04_memn2n"
ROOT = Path(__file__).resolve().parents[1]

_DATA = [os.environ.get("MEM_TUTORIAL_BABI_DIR"), str(ROOT.parent / "shared" / "data" / "babi")]
BABI = next((d for d in _DATA if d and (Path(d) / "tasks_1-20_v1-2" / "en").is_dir()), None)
pytestmark = pytest.mark.skipif(BABI is None, reason="bAbI v1.2 not found: set MEM_TUTORIAL_BABI_DIR to the folder "
                                "holding tasks_1-20_v1-2/ (CI: ../shared/data/babi)")

TESTS = {
    "position_encoding": "test_position_encoding",
    "memory_hop": "test_memory_hop",
    "adjacent_memn2n": "test_adjacent_memn2n",
}

WRONG = {
    # one plausible mistake per exercise; each student makes exactly one
    "pe_zero_based": ("position_encoding", "def position_encoding(J, d):\n"
                      "    j = torch.arange(0, J, dtype=torch.float32).unsqueeze(1)\n"
                      "    k = torch.arange(0, d, dtype=torch.float32).unsqueeze(0)\n"
                      "    return (1 - j / J) - (k / d) * (1 - 2 * j / J)\n"),
    "hop_attends_to_padding": ("memory_hop", "def memory_hop(u, memory_in, memory_out, mask):\n"
                               "    p = torch.softmax(torch.einsum('bd,bnd->bn', u, memory_in), dim=1)\n"
                               "    return u + torch.einsum('bn,bnd->bd', p, memory_out), p\n"),
    "tying_not_adjacent": ("adjacent_memn2n",
                           "def adjacent_memn2n(stories, mask, queries, embeddings, encoding):\n"
                           "    u = M.sentence_representation(queries, embeddings[0], encoding)\n"
                           "    ps = []\n"
                           "    for k in range(1, len(embeddings)):\n"
                           "        m = M.sentence_representation(stories, embeddings[k], encoding)\n"
                           "        u, p = M.memory_hop(u, m, m, mask)\n"
                           "        ps.append(p)\n"
                           "    return u @ embeddings[-1].T, torch.stack(ps, dim=1)\n"),
}

# second mistakes, all made by one student: every one of them must be caught
SECOND_WRONG = {
    "position_encoding": "def position_encoding(J, d):\n"
                         "    j = torch.arange(1, J + 1, dtype=torch.float32).unsqueeze(1)\n"
                         "    k = torch.arange(1, d + 1, dtype=torch.float32).unsqueeze(0)\n"
                         "    return ((1 - j / J) - (k / d) * (1 - 2 * j / J)).T\n",  # [d, J] instead of [J, d]
    "memory_hop": "def memory_hop(u, memory_in, memory_out, mask):\n"
                  "    p = torch.softmax(torch.einsum('bd,bnd->bn', u, memory_in), dim=1) * mask\n"
                  "    return u + torch.einsum('bn,bnd->bd', p, memory_out), p\n",
    "adjacent_memn2n": "def adjacent_memn2n(stories, mask, queries, embeddings, encoding):\n"
                       "    u = M.sentence_representation(queries, embeddings[0], encoding)\n"
                       "    ps = []\n"
                       "    for k in range(1, len(embeddings)):\n"
                       "        m = M.sentence_representation(stories, embeddings[k - 1], encoding)\n"
                       "        c = M.sentence_representation(stories, embeddings[k], encoding)\n"
                       "        u, p = M.memory_hop(u, m, c, mask)\n"
                       "        ps.append(p)\n"
                       "    return u @ embeddings[0].T, torch.stack(ps, dim=1)\n",
}

CALLS_LIBRARY = {
    "position_encoding": "def position_encoding(J, d):\n    return M.position_encoding(J, d)\n",
    "memory_hop": "from mem_tutorial.models.memn2n import memory_hop as _hop\n"
                  "def memory_hop(u, memory_in, memory_out, mask):\n"
                  "    return tuple(_hop(u, memory_in, memory_out, mask))\n",
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    os.environ.setdefault("MEM_TUTORIAL_BABI_DIR", BABI)
    course = ScratchCourse(tmp_path_factory.mktemp("course04"), CHAPTER, timeout=300)
    solved = course.solved_notebook()
    course.submit("solution", solved)  # the whole notebook, every answer right
    course.submit("stub", course.student_notebook())  # the whole notebook, no answer
    course.submit_wrong(solved, WRONG, TESTS)  # lean, wrong answers to different exercises combined
    second = solved
    for gid, src in SECOND_WRONG.items():
        second = with_solution(second, gid, src)
    course.submit("second_wrong", lean(second))
    lib = solved
    for gid, src in CALLS_LIBRARY.items():
        lib = with_solution(lib, gid, src)
    course.submit("calls_library", lean(lib))
    course.submit("deleted_test", without_cell(lean(course.student_notebook()), "test_memory_hop"))
    return course, course.autograde()


def test_point_layout(graded):
    course, _ = graded
    assert course.grade_ids("auto") == {"test_position_encoding": 2, "test_memory_hop": 3, "test_adjacent_memn2n": 3}
    assert course.grade_ids("manual") == {"written_hops": 2}


def test_solution_gets_full_autograded_points(graded):
    course, scores = graded
    course.assert_solution_full(scores, 8)


def test_stub_gets_zero_and_fails_only_in_test_cells(graded):
    course, scores = graded
    course.assert_stub_zero(scores)


@pytest.mark.parametrize("student", sorted(WRONG))
def test_each_wrong_answer_loses_only_its_exercise(graded, student):
    course, scores = graded
    course.assert_loses_only(scores, student)


def test_second_wrong_answers_all_caught(graded):
    _, scores = graded
    assert scores["second_wrong"].auto == 0, scores["second_wrong"].by_cell


def test_calling_the_library_earns_nothing(graded):
    _, scores = graded
    by_cell = scores["calls_library"].by_cell
    assert by_cell["test_position_encoding"] == 0 and by_cell["test_memory_hop"] == 0
    assert by_cell["test_adjacent_memn2n"] == 3


def test_deleted_test_cell_is_restored_and_run(graded):
    course, scores = graded
    course.assert_deleted_test_runs(scores, "test_memory_hop")
