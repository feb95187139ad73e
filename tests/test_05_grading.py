"""Chapter 5 through nbgrader: the solution earns every autograded point, the stub none, each plausible wrong
answer loses its own exercise's points only, a deleted test still runs, calling the library earns nothing."""

import pytest

from nbgrader_harness import ScratchCourse, lean, with_solution, without_cell

CHAPTER = "05_kv_memnn"

TESTS = {
    "key_hashing": ["test_key_hashing"],
    "key_addressing": ["test_key_addressing", "test_value_reading"],
    "hop_update": ["test_hop_update"],
}

_INDEX_OK = ("def inverted_index(keys):\n"
             "    index = {}\n"
             "    for i, key in enumerate(keys):\n"
             "        for word in set(key):\n"
             "            index.setdefault(word, []).append(i)\n"
             "    return index\n")
_HASH_OK = ("def key_hashing(question, index, max_frequency, stop_words=STOP_WORDS):\n"
            "    out = set()\n"
            "    for w in question:\n"
            "        if w not in stop_words and len(index.get(w, [])) < max_frequency:\n"
            "            out.update(index.get(w, []))\n"
            "    return sorted(out)\n")
_READ_OK = "def value_reading(weights, values):\n    return torch.einsum('bk,bkd->bd', weights, values)\n"
_ADDR_OK = ("def key_addressing(query, keys, key_mask):\n"
            "    s = torch.einsum('bd,bkd->bk', query, keys).masked_fill(~key_mask, -1e30)\n"
            "    return torch.softmax(s, -1) * key_mask\n")

WRONG = {
    # one plausible mistake per exercise; each student makes exactly one (grade_id, cell source, lost tests)
    "frequency_at_most_F": ("key_hashing", _INDEX_OK + _HASH_OK.replace("< max_frequency", "<= max_frequency"),
                            ["test_key_hashing"]),
    "no_mask": ("key_addressing", "def key_addressing(query, keys, key_mask):\n"
                "    return torch.softmax(torch.einsum('bd,bkd->bk', query, keys), -1)\n" + _READ_OK,
                ["test_key_addressing"]),
    "mean_of_values": ("key_addressing", _ADDR_OK + "def value_reading(weights, values):\n"
                       "    return values.mean(1)\n", ["test_value_reading"]),
    "R_transposed": ("hop_update", "def hop_update(query, read, R):\n    return (query + read) @ R\n",
                     ["test_hop_update"]),
}

# second mistakes, all made by one student: every one of them must be caught
SECOND_WRONG = {
    "key_hashing": ("def inverted_index(keys):\n"
                    "    index = {}\n"
                    "    for i, key in enumerate(keys):\n"
                    "        for word in key:\n"
                    "            index.setdefault(word, []).append(i)\n"
                    "    return index\n" + _HASH_OK),
    "key_addressing": ("def key_addressing(query, keys, key_mask):\n"
                       "    s = torch.einsum('bd,bkd->bk', query, keys).masked_fill(~key_mask, float('-inf'))\n"
                       "    return torch.softmax(s, -1)\n" + _READ_OK),
    "hop_update": "def hop_update(query, read, R):\n    return query @ R.T + read\n",
}

# more wrong answers, graded in one notebook each would be slow: they are checked together with the second ones
THIRD_WRONG = {
    "key_hashing": _INDEX_OK + _HASH_OK.replace("if w not in stop_words and ", "if "),
    "key_addressing": ("def key_addressing(query, keys, key_mask):\n"
                       "    s = torch.einsum('bd,bkd->bk', query, keys)\n"
                       "    return torch.softmax(s, -1) * key_mask\n" + _READ_OK),
    "hop_update": "def hop_update(query, read, R):\n    return (query + read) @ R.T + query\n",
}

CALLS_LIBRARY = ("def key_addressing(query, keys, key_mask):\n    return mem.key_addressing(query, keys, key_mask)\n"
                 + _READ_OK)
CALLS_LIBRARY_ALIASED = ("from mem_tutorial.memory.keyvalue import hop_update as _hop\n"
                         "def hop_update(query, read, R):\n    return _hop(query, read, R)\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = ScratchCourse(tmp_path_factory.mktemp("course05"), CHAPTER)
    solved = course.solved_notebook()
    course.submit("solution", solved)  # the whole notebook, every answer right
    course.submit("stub", course.student_notebook())  # the whole notebook, no answer
    course.submit_wrong(solved, WRONG, TESTS)  # lean, wrong answers to different exercises combined
    for name, table in (("second_wrong", SECOND_WRONG), ("third_wrong", THIRD_WRONG)):
        nb = solved
        for gid, src in table.items():
            nb = with_solution(nb, gid, src)
        course.submit(name, lean(nb))
    lib = with_solution(with_solution(solved, "key_addressing", CALLS_LIBRARY), "hop_update", CALLS_LIBRARY_ALIASED)
    course.submit("calls_library", lean(lib))
    course.submit("deleted_test", without_cell(lean(course.student_notebook()), "test_hop_update"))
    return course, course.autograde()


def test_point_layout(graded):
    course, _ = graded
    assert course.grade_ids("auto") == {"test_key_hashing": 3, "test_key_addressing": 3, "test_value_reading": 1,
                                        "test_hop_update": 2}
    assert course.grade_ids("manual") == {"written_kv_split": 2}


def test_solution_gets_full_autograded_points(graded):
    course, scores = graded
    course.assert_solution_full(scores, 9)


def test_stub_gets_zero_and_fails_only_in_test_cells(graded):
    course, scores = graded
    course.assert_stub_zero(scores)


@pytest.mark.parametrize("student", sorted(WRONG))
def test_each_wrong_answer_loses_only_its_exercise(graded, student):
    course, scores = graded
    course.assert_loses_only(scores, student)


@pytest.mark.parametrize("student", ["second_wrong", "third_wrong"])
def test_other_wrong_answers_all_caught(graded, student):
    _, scores = graded
    by_cell = scores[student].by_cell
    assert by_cell["test_key_hashing"] == 0 and by_cell["test_key_addressing"] == 0
    assert by_cell["test_hop_update"] == 0
    assert by_cell["test_value_reading"] == 1  # value_reading was right in these submissions


def test_calling_the_library_earns_nothing(graded):
    _, scores = graded
    by_cell = scores["calls_library"].by_cell
    assert by_cell["test_key_addressing"] == 0 and by_cell["test_hop_update"] == 0
    assert by_cell["test_key_hashing"] == 3 and by_cell["test_value_reading"] == 1


def test_deleted_test_cell_is_restored_and_run(graded):
    course, scores = graded
    course.assert_deleted_test_runs(scores, "test_hop_update")
