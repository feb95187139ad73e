"""Chapter 1 through nbgrader: the solution earns every autograded point, the stub none, each plausible wrong
answer loses its own exercise's points only, a deleted test still runs, calling the library earns nothing."""

import pytest

from nbgrader_harness import ScratchCourse, lean, with_solution, without_cell

CHAPTER = "01_memory_as_attention"

TESTS = {
    "cosine_similarity": "test_cosine_similarity",
    "content_weighting": "test_content_weighting",
    "read": "test_read",
    "write": "test_write",
}

WRONG = {
    # one plausible mistake per exercise; each student makes exactly one
    "dot_product_only": ("cosine_similarity", "def cosine_similarity(memory, key, eps=1e-8):\n"
                         "    return (memory * key.unsqueeze(1)).sum(-1)\n"),
    "beta_ignored": ("content_weighting", "def content_weighting(memory, key, beta):\n"
                     "    return torch.softmax(mem.cosine_similarity(memory, key), dim=-1)\n"),
    "read_sums_words": ("read", "def read(memory, weights):\n"
                        "    return (weights.unsqueeze(-1) * memory).sum(dim=-1)\n"),
    "add_before_erase": ("write", "def write(memory, weights, erase, add):\n"
                         "    w = weights.unsqueeze(-1)\n"
                         "    added = memory + w * add.unsqueeze(1)\n"
                         "    return added * (1 - w * erase.unsqueeze(1))\n"),
}

# second mistakes, all made by one student: every one of them must be caught
SECOND_WRONG = {
    "cosine_similarity": "def cosine_similarity(memory, key, eps=1e-8):\n"
                         "    return (memory * key.unsqueeze(1)).sum(-1) / (memory.norm(dim=1, keepdim=True).sum(-1) * key.norm(dim=-1, keepdim=True) + eps)\n",
    "content_weighting": "def content_weighting(memory, key, beta):\n"
                         "    return torch.softmax(beta.unsqueeze(-1) * mem.cosine_similarity(memory, key), dim=0)\n",
    "read": "def read(memory, weights):\n    return memory.mean(dim=1)\n",
    "write": "def write(memory, weights, erase, add):\n"
             "    return memory * (1 - erase.unsqueeze(1)) + weights.unsqueeze(-1) * add.unsqueeze(1)\n",
}

CALLS_LIBRARY = "def cosine_similarity(memory, key, eps=1e-8):\n    return mem.cosine_similarity(memory, key)\n"
CALLS_LIBRARY_ALIASED = ("from mem_tutorial.memory.addressing import cosine_similarity as _cs\n"
                         "def read(memory, weights):\n    return mem.read(memory, weights)\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = ScratchCourse(tmp_path_factory.mktemp("course01"), CHAPTER)
    solved = course.solved_notebook()
    course.submit("solution", solved)  # the whole notebook, every answer right
    course.submit("stub", course.student_notebook())  # the whole notebook, no answer
    course.submit_wrong(solved, WRONG, TESTS)  # lean, wrong answers to different exercises combined
    second = solved
    for gid, src in SECOND_WRONG.items():
        second = with_solution(second, gid, src)
    course.submit("second_wrong", lean(second))
    lib = with_solution(with_solution(solved, "cosine_similarity", CALLS_LIBRARY), "read", CALLS_LIBRARY_ALIASED)
    course.submit("calls_library", lean(lib))
    course.submit("deleted_test", without_cell(lean(course.student_notebook()), "test_read"))
    return course, course.autograde()


def test_point_layout(graded):
    course, _ = graded
    assert course.grade_ids("auto") == {"test_cosine_similarity": 2, "test_content_weighting": 2,
                                        "test_read": 1, "test_write": 2}
    assert course.grade_ids("manual") == {"written_beta": 2, "written_erase": 1}


def test_solution_gets_full_autograded_points(graded):
    course, scores = graded
    course.assert_solution_full(scores, 7)  # the written answers wait for the instructor


def test_stub_gets_zero_and_fails_only_in_test_cells(graded):
    course, scores = graded
    # run top to bottom, the student notebook fails only in the tests of the unimplemented exercises
    course.assert_stub_zero(scores)


@pytest.mark.parametrize("student", sorted(WRONG))
def test_each_wrong_answer_loses_only_its_exercise(graded, student):
    course, scores = graded
    course.assert_loses_only(scores, student)


def test_second_wrong_answers_all_caught(graded):
    _, scores = graded
    assert scores["second_wrong"].auto == 0, scores["second_wrong"].by_cell


def test_calling_the_library_earns_nothing(graded):
    course, scores = graded
    by_cell = scores["calls_library"].by_cell
    assert by_cell["test_cosine_similarity"] == 0 and by_cell["test_read"] == 0
    assert by_cell["test_content_weighting"] == 2 and by_cell["test_write"] == 2


def test_deleted_test_cell_is_restored_and_run(graded):
    course, scores = graded
    course.assert_deleted_test_runs(scores, "test_read")  # restored from the gradebook; the stub fails it
