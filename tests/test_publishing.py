"""Where the course is published (``[tool.mem-tutorial]``), ``mem-tutorial publish``, the setup cell's install
block and ``mem-tutorial workspace``."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from mem_tutorial import publishing as pub
from mem_tutorial.grading import release as rel

ROOT = Path(__file__).resolve().parents[1]
CH1 = "01_memory_as_attention"


def test_committed_config_badges_and_install_source_agree():
    published = pub.read_config(ROOT)
    for chapter in rel.available_chapters(ROOT):
        for path in sorted((ROOT / "notebooks" / chapter).glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            assert published.colab(f"notebooks/{chapter}/{path.name}") in nb.cells[0].source
            setup = [c for c in nb.cells if c.cell_type == "code" and "Course set-up (generated" in c.source]
            assert len(setup) == 1, f"{path.name}: expected one generated install block"
            assert f'or "{published.archive}"' in setup[0].source
            assert "git+" not in setup[0].source  # a plain zip URL: every pip installs it
    assert not pub.update_readme(ROOT, check=True), "README course-links block is stale: run mem-tutorial release"


def test_config_rejects_malformed_names():
    with pytest.raises(ValueError):
        pub.Published("no-slash", "main")
    with pytest.raises(ValueError):
        pub.Published("a/b", "../x")


@pytest.fixture
def course_copy(tmp_path):
    """A course folder with Chapter 1 only (sources, solution and student notebooks)."""
    for name in ("pyproject.toml", "nbgrader_config.py", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for top in ("solutions", "notebooks"):
        shutil.copytree(ROOT / top / CH1, tmp_path / top / CH1)
    return tmp_path


def test_publish_retargets_everything_in_one_command(course_copy):
    old = pub.read_config(course_copy)
    target = pub.Published("some-teacher/memory-course", "spring-2027")
    pub.publish(course_copy, target, log=lambda *_: None)

    assert pub.read_config(course_copy) == target
    toml = (course_copy / "pyproject.toml").read_text()
    assert 'Homepage = "https://github.com/some-teacher/memory-course"' in toml
    assert "[project]" in toml and "[tool.pytest.ini_options]" in toml  # the rest is kept
    for top in ("solutions", "notebooks"):
        text = (course_copy / top / CH1 / "memory_as_attention.ipynb").read_text()
        assert old.repository not in text, f"{top}: the old repository is still named"
        assert target.colab(f"notebooks/{CH1}/memory_as_attention.ipynb") in text
        assert target.archive in text
    solution = nbformat.read(course_copy / "solutions" / CH1 / "memory_as_attention.ipynb", as_version=4)
    assert rel.unexecuted_cells(solution) == []  # outputs kept
    readme = (course_copy / "README.md").read_text()
    assert target.colab(f"notebooks/{CH1}/memory_as_attention.ipynb") in readme
    assert old.repository + "/blob" not in readme
    # what `mem-tutorial release --check` checks
    assert rel.stale_solutions(course_copy, CH1) == []
    assert rel.stale_release(course_copy, CH1) == []
    assert not pub.update_readme(course_copy, check=True)


def _run_install_block(tmp_path, env_extra, colab=True):
    block = pub.install_block(pub.read_config(ROOT))
    prelude = textwrap.dedent(f"""
        import importlib.util, sys, types
        _real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "mem_tutorial" else _real(name, *a)
        if {colab!r}:
            sys.modules["google.colab"] = types.ModuleType("google.colab")
    """)
    script = tmp_path / "cell.py"
    script.write_text(prelude + block + "\nprint('INSTALLED')\n")
    env = {k: v for k, v in os.environ.items() if k != "MEM_TUTORIAL_SOURCE"}
    env.update({"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env_extra})
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)


def test_install_failure_stops_with_one_clear_message(tmp_path):
    missing = tmp_path / "no-such-course.zip"
    res = _run_install_block(tmp_path, {"MEM_TUTORIAL_SOURCE": str(missing)})
    assert res.returncode != 0 and "INSTALLED" not in res.stdout
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: Could not install the course library from " + str(missing)), last
    assert "%env MEM_TUTORIAL_SOURCE=" in last and 'os.environ[\\"MEM_TUTORIAL_SOURCE\\"]' not in last
    assert 'os.environ["MEM_TUTORIAL_SOURCE"]' in last
    assert res.stderr.count("Traceback") == 1 and "During handling" not in res.stderr, res.stderr  # one exception


def test_outside_colab_a_missing_library_is_explained_not_installed(tmp_path):
    res = _run_install_block(tmp_path, {}, colab=False)
    assert res.returncode != 0 and "Installing" not in res.stdout
    assert "ModuleNotFoundError: The course library mem_tutorial is not installed" in res.stderr
    assert 'pip install -e ".[course]"' in res.stderr


def test_workspace_copies_and_never_overwrites(tmp_path):
    dest = tmp_path / "my-work"
    copied, skipped = pub.workspace(ROOT, dest, log=lambda *_: None)
    assert skipped == [] and (dest / CH1 / "memory_as_attention.ipynb") in copied
    mine = dest / CH1 / "memory_as_attention.ipynb"
    mine.write_text("my answers")
    lines = []
    copied2, skipped2 = pub.workspace(ROOT, dest, log=lines.append)
    assert copied2 == [] and mine in skipped2 and mine.read_text() == "my answers"
    assert any("not overwritten" in line for line in lines)


def test_serve_runs_jupyterlab_on_the_course_root(capsys):
    from mem_tutorial import cli

    assert cli.main(["--root", str(ROOT), "serve", "--dry-run", "--port=9999"]) == 0
    line = capsys.readouterr().out.strip()
    assert " lab " in line and f"--ServerApp.root_dir={ROOT}" in line and line.endswith("--port=9999")
    assert ("--allow-root" in line) == (os.geteuid() == 0)


def test_workspace_command_defaults_to_my_work(tmp_path, monkeypatch, capsys):
    from mem_tutorial import cli

    monkeypatch.chdir(tmp_path)  # outside the repository: the clone the library was installed from is used
    assert cli.main(["workspace"]) == 0
    assert (tmp_path / "my-work" / CH1 / "memory_as_attention.ipynb").is_file()
    assert "my-work" in capsys.readouterr().out
