"""Chapter 2 through nbgrader: the solution earns every autograded point, the stub none, each plausible wrong
answer loses its own exercise's points only (a reversed shift and a shift without wrap-around included), a deleted
test still runs, calling the library's own version earns nothing."""

import pytest

from nbgrader_harness import ScratchCourse, lean, with_solution, without_cell

CHAPTER = "02_ntm"

TESTS = {
    "interpolate": "test_interpolate",
    "shift": "test_shift",
    "sharpen": "test_sharpen",
    "address": "test_address",
    "read_head_step": "test_read_head_step",
}

WRONG = {
    "gate_swapped": ("interpolate", "def interpolate(content_w, prev_w, gate):\n"
                     "    g = gate.unsqueeze(-1)\n    return g * prev_w + (1 - g) * content_w\n"),
    "shift_reversed": ("shift", "def shift(weights, shift_dist):\n"
                       "    half = shift_dist.shape[-1] // 2\n    out = torch.zeros_like(weights)\n"
                       "    for j in range(shift_dist.shape[-1]):\n"
                       "        out = out + shift_dist[:, j:j+1] * torch.roll(weights, half - j, dims=-1)\n"
                       "    return out\n"),
    "shift_no_wrap": ("shift", "def shift(weights, shift_dist):\n"
                      "    half = shift_dist.shape[-1] // 2\n    N = weights.shape[-1]\n"
                      "    padded = F.pad(weights, (half, half))\n    out = torch.zeros_like(weights)\n"
                      "    for j in range(shift_dist.shape[-1]):\n"
                      "        off = j - half\n"
                      "        out = out + shift_dist[:, j:j+1] * padded[:, half - off:half - off + N]\n"
                      "    return out\n"),
    "sharpen_not_renormalised": ("sharpen", "def sharpen(weights, gamma, eps=1e-12):\n"
                                 "    return weights ** gamma.unsqueeze(-1)\n"),
    "address_wrong_order": ("address", "def address(memory, key, beta, gate, shift_dist, gamma, prev_w):\n"
                            "    wc = mem.content_weighting(memory, key, beta)\n"
                            "    w = mem.sharpen(mem.shift(wc, shift_dist), gamma)\n"
                            "    return mem.interpolate(w, prev_w, gate)\n"),
    "gamma_without_one": ("read_head_step", "def read_head_step(memory, prev_w, raw):\n"
                          "    W = memory.shape[-1]\n    S = raw.shape[-1] - W - 3\n"
                          "    w = mem.ntm_addressing(memory, raw[:, :W], F.softplus(raw[:, W]),\n"
                          "        torch.sigmoid(raw[:, W + 1]), torch.softmax(raw[:, W + 2:W + 2 + S], -1),\n"
                          "        F.softplus(raw[:, W + 2 + S]), prev_w)\n"
                          "    return mem.read(memory, w), w\n"),
}

CALLS_LIBRARY = "def shift(weights, shift_dist):\n    return mem.shift(weights, shift_dist)\n"
CALLS_LIBRARY_PIPELINE = ("def address(memory, key, beta, gate, shift_dist, gamma, prev_w):\n"
                          "    return mem.ntm_addressing(memory, key, beta, gate, shift_dist, gamma, prev_w)\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = ScratchCourse(tmp_path_factory.mktemp("course02"), CHAPTER)
    solved = course.solved_notebook()
    course.submit("solution", solved)  # the whole notebook, every answer right
    course.submit("stub", course.student_notebook())  # the whole notebook, no answer
    course.submit_wrong(solved, WRONG, TESTS)  # lean, wrong answers to different exercises combined
    lib = with_solution(with_solution(solved, "shift", CALLS_LIBRARY), "address", CALLS_LIBRARY_PIPELINE)
    course.submit("calls_library", lean(lib))
    course.submit("deleted_test", without_cell(lean(course.student_notebook()), "test_shift"))
    return course, course.autograde()


def test_point_layout(graded):
    course, _ = graded
    assert course.grade_ids("auto") == {"test_interpolate": 2, "test_shift": 3, "test_sharpen": 2,
                                        "test_address": 2, "test_read_head_step": 2}
    assert course.grade_ids("manual") == {"written_generalisation": 2}


def test_solution_gets_full_autograded_points(graded):
    course, scores = graded
    course.assert_solution_full(scores, 11)


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
    assert by_cell["test_shift"] == 0 and by_cell["test_address"] == 0
    assert by_cell["test_interpolate"] == 2 and by_cell["test_sharpen"] == 2 and by_cell["test_read_head_step"] == 2


def test_deleted_test_cell_is_restored_and_run(graded):
    course, scores = graded
    course.assert_deleted_test_runs(scores, "test_shift")
