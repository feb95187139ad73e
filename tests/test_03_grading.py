"""Chapter 3 through nbgrader: the solution earns every autograded point, the stub none, each plausible wrong
answer loses its own exercise's points only (an unsorted allocation and a non-zero link diagonal included),
a deleted test still runs, calling the library earns nothing."""

import pytest

from nbgrader_harness import ScratchCourse, lean, with_solution, without_cell

CHAPTER = "03_dnc"

TESTS = {
    "usage_update": "test_usage_update",
    "allocation_weighting": "test_allocation_weighting",
    "temporal_link": "test_temporal_link",
    "read_modes": "test_read_modes",
}

_PRECEDENCE = (
    "def precedence_update(prev_precedence, write_weights):\n"
    "    return (1 - write_weights.sum(-1, keepdim=True)) * prev_precedence + write_weights\n\n\n"
)

WRONG = {
    # one plausible mistake per submission
    "retention_sum": ("usage_update",
                      "def usage_update(prev_usage, prev_write_weights, free_gates, prev_read_weights):\n"
                      "    retention = 1 - (free_gates.unsqueeze(-1) * prev_read_weights).sum(1)\n"
                      "    return (prev_usage + prev_write_weights - prev_usage * prev_write_weights) * retention\n"),
    "allocation_unsorted": ("allocation_weighting",
                            "def allocation_weighting(usage):\n"
                            "    shifted = torch.cat([torch.ones_like(usage[:, :1]), usage[:, :-1]], dim=-1)\n"
                            "    return (1 - usage) * torch.cumprod(shifted, dim=-1)\n"),
    "allocation_not_scattered_back": ("allocation_weighting",
                                      "def allocation_weighting(usage):\n"
                                      "    s, idx = torch.sort(usage, dim=-1, stable=True)\n"
                                      "    shifted = torch.cat([torch.ones_like(s[:, :1]), s[:, :-1]], dim=-1)\n"
                                      "    return (1 - s) * torch.cumprod(shifted, dim=-1)\n"),
    "allocation_inclusive_cumprod": ("allocation_weighting",
                                     "def allocation_weighting(usage):\n"
                                     "    s, idx = torch.sort(usage, dim=-1, stable=True)\n"
                                     "    a = (1 - s) * torch.cumprod(s, dim=-1)\n"
                                     "    return torch.zeros_like(usage).scatter(-1, idx, a)\n"),
    "link_nonzero_diagonal": ("temporal_link", _PRECEDENCE +
                              "def link_update(prev_link, prev_precedence, write_weights):\n"
                              "    w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)\n"
                              "    return (1 - w_i - w_j) * prev_link + w_i * prev_precedence.unsqueeze(-2)\n"),
    "link_transposed": ("temporal_link", _PRECEDENCE +
                        "def link_update(prev_link, prev_precedence, write_weights):\n"
                        "    w_i, w_j = write_weights.unsqueeze(-1), write_weights.unsqueeze(-2)\n"
                        "    link = (1 - w_i - w_j) * prev_link + prev_precedence.unsqueeze(-1) * w_j\n"
                        "    return link * (1 - torch.eye(link.shape[-1], dtype=link.dtype))\n"),
    "read_directions_swapped": ("read_modes",
                                "def read_weighting(link, prev_read_weights, content, read_modes):\n"
                                "    fwd = torch.einsum('bij,bri->brj', link, prev_read_weights)\n"
                                "    bwd = torch.einsum('bij,brj->bri', link, prev_read_weights)\n"
                                "    pi = read_modes.unsqueeze(-1)\n"
                                "    return pi[:, :, 0] * bwd + pi[:, :, 1] * content + pi[:, :, 2] * fwd\n"),
}

CALLS_LIBRARY = ("def allocation_weighting(usage):\n"
                 "    return mem.allocation_weighting(usage)\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = ScratchCourse(tmp_path_factory.mktemp("course03"), CHAPTER)
    solved = course.solved_notebook()
    course.submit("solution", solved)  # the whole notebook, every answer right
    course.submit("stub", course.student_notebook())  # the whole notebook, no answer
    course.submit_wrong(solved, WRONG, TESTS)  # lean, wrong answers to different exercises combined
    course.submit("calls_library", lean(with_solution(solved, "allocation_weighting", CALLS_LIBRARY)))
    course.submit("deleted_test", without_cell(lean(course.student_notebook()), "test_allocation_weighting"))
    return course, course.autograde()


def test_point_layout(graded):
    course, _ = graded
    assert course.grade_ids("auto") == {"test_usage_update": 2, "test_allocation_weighting": 3,
                                        "test_temporal_link": 3, "test_read_modes": 2}
    assert course.grade_ids("manual") == {"written_allocation": 2}


def test_solution_gets_full_autograded_points(graded):
    course, scores = graded
    course.assert_solution_full(scores, 10)


def test_stub_gets_zero_and_fails_only_in_test_cells(graded):
    course, scores = graded
    course.assert_stub_zero(scores)


@pytest.mark.parametrize("student", sorted(WRONG))
def test_each_wrong_answer_loses_only_its_exercise(graded, student):
    course, scores = graded
    course.assert_loses_only(scores, student)


def test_calling_the_library_earns_nothing(graded):
    _, scores = graded
    by_cell = scores["calls_library"].by_cell
    assert by_cell["test_allocation_weighting"] == 0
    assert by_cell["test_usage_update"] == 2 and by_cell["test_read_modes"] == 2


def test_deleted_test_cell_is_restored_and_run(graded):
    course, scores = graded
    course.assert_deleted_test_runs(scores, "test_allocation_weighting")
