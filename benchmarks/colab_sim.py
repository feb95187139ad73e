"""Simulated Colab: run every student notebook as a learner would in Colab, from a bare environment, offline.

What it builds (all in a temporary folder unless ``--keep``):

* a **fresh virtualenv with only what Colab preinstalls** that matters here — torch (the CPU build), numpy,
  matplotlib, ipywidgets, tqdm, ipykernel, nbclient, scikit-learn — installed with ``--no-index`` from a local wheel folder
  (``--wheels``, default ``~/.cache/mem_tutorial/colab_sim_wheels``, filled once with ``pip download`` by
  ``--prepare``); the course library is *not* installed;
* a stand-in ``google.colab`` module, imported by an IPython start-up file, so ``"google.colab" in sys.modules``
  is true in the kernel as in Colab;
* ``MEM_TUTORIAL_SOURCE`` pointing at a zip archive of the checkout (its tracked files as they are now, under a
  top folder, like GitHub's branch archive), so each notebook's setup cell installs the course from it;
* empty caches (a new ``HOME``, pip cache, course cache) and **no network**: pip runs with ``PIP_NO_INDEX=1`` and
  ``--find-links`` of the wheel folder, HTTP(S) proxies point at a closed port, and ``MEM_TUTORIAL_NO_DOWNLOAD=1``
  (bAbI is therefore missing unless ``--babi DIR`` plays a learner who set ``%env MEM_TUTORIAL_BABI_DIR``).

Each student notebook then runs with **Colab's Run All semantics**: top to bottom in one kernel, stopping at the
first cell that raises (Colab ignores the ``raises-exception`` tag, so tags are removed). Each chapter starts
without the course library (it is uninstalled between chapters, as in a new runtime opened from the chapter's
badge), so every setup cell installs it from the archive; ``--fresh-each`` even builds a new virtualenv per
chapter. FAST mode (``MEM_TUTORIAL_FAST=1``, to keep the run short) and ``MEM_TUTORIAL_SELFCHECK`` unset (a learner's
default). Output: per chapter, reached the end or stopped at code
cell k (with the error), and the time.

    python benchmarks/colab_sim.py --prepare          # once, with access to the package index: fill the wheel folder
    python benchmarks/colab_sim.py                    # run (offline)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PREINSTALLED = ["torch==2.13.0", "numpy", "matplotlib", "ipywidgets", "tqdm", "ipykernel", "nbclient", "scikit-learn"]
BUILD = ["setuptools>=77", "wheel"]  # what pip's isolated build of the course archive needs
DEFAULT_WHEELS = Path("~/.cache/mem_tutorial/colab_sim_wheels").expanduser()
CLOSED_PORT_PROXY = "http://127.0.0.1:9"

_RUNNER = r'''
import json, sys, time
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

path, out = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
for cell in nb.cells:  # Colab's Run All ignores cell tags: it stops at the first exception
    cell.get("metadata", {}).pop("tags", None)
code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
client = NotebookClient(nb, timeout=900, kernel_name="python3", allow_errors=False, record_timing=False,
                        resources={"metadata": {"path": sys.argv[3]}})
start = time.time()
result = {"code_cells": len(code), "stopped_at": None, "error": None}
try:
    client.execute()
except CellExecutionError as exc:
    ran = [k for k, i in enumerate(code) if nb.cells[i].get("execution_count") is not None]
    result["stopped_at"] = (ran[-1] + 1) if ran else 1
    result["error"] = f"{exc.ename}: {str(exc.evalue)[:300]}"
except Exception as exc:  # kernel death, timeout
    result["stopped_at"] = -1
    result["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
result["seconds"] = round(time.time() - start, 1)
outputs = []
for i in code:
    for o in nb.cells[i].get("outputs", []):
        if o.get("output_type") == "stream":
            outputs.append(o.get("text", ""))
result["stream_tail"] = "".join(outputs)[-1500:]
first = nb.cells[code[0]].get("outputs", []) if code else []
result["setup_output"] = "".join(o.get("text", "") for o in first if o.get("output_type") == "stream")[:600]
result["not_passed"] = sum(t.count("not passed yet") for t in outputs)
result["skipped_sections"] = sum(t.count("\u23ed Section") for t in outputs)
json.dump(result, open(out, "w"))
'''


def run(cmd, **kw):
    kw.setdefault("check", True)
    return subprocess.run([str(c) for c in cmd], **kw)


def prepare(wheels: Path) -> None:
    """Download the preinstalled packages' wheels (and the build backend) once, with access to the index."""
    wheels.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "-q", "-d", wheels, *PREINSTALLED, *BUILD])
    print(f"wheels in {wheels}: {len(list(wheels.glob('*.whl')))} files")


def archive(dest: Path) -> Path:
    """A zip of the checkout's tracked files (current content) under one top folder, like GitHub's archive."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in filter(None, files):
            path = ROOT / name.decode()
            if path.is_file():
                zf.write(path, f"mem-tutorial-main/{name.decode()}")
    return dest


def fake_colab(folder: Path) -> dict:
    """A stand-in google.colab package and an IPython profile whose start-up file imports it."""
    pkg = folder / "site" / "google" / "colab"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab (benchmarks/colab_sim.py)."""\n')
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # noqa: F401  (as Colab's kernels have it)\n")
    return {"PYTHONPATH": str(folder / "site"), "IPYTHONDIR": str(folder / "ipython")}


def make_env(work: Path, wheels: Path, source: Path, babi: str | None) -> dict:
    home = work / "home"
    home.mkdir()
    keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TERM", "TMPDIR", "USER", "LOGNAME")}
    env = {
        **keep,
        "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "PIP_CACHE_DIR": str(work / "pip-cache"),
        "PATH": f"{work / 'venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "HTTP_PROXY": CLOSED_PORT_PROXY, "HTTPS_PROXY": CLOSED_PORT_PROXY,
        "http_proxy": CLOSED_PORT_PROXY, "https_proxy": CLOSED_PORT_PROXY,
        "MEM_TUTORIAL_NO_DOWNLOAD": "1", "MEM_TUTORIAL_SOURCE": str(source), "MEM_TUTORIAL_FAST": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        **fake_colab(work / "colab"),
    }
    if babi:
        env["MEM_TUTORIAL_BABI_DIR"] = babi
    return env


def student_notebooks() -> list[Path]:
    from mem_tutorial.grading.release import CHAPTERS

    return [p for c in CHAPTERS for p in sorted((ROOT / "notebooks" / c).glob("*.ipynb"))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepare", action="store_true", help="download the wheels (needs the package index)")
    parser.add_argument("--wheels", type=Path, default=DEFAULT_WHEELS)
    parser.add_argument("--babi", help="play a learner who set %%env MEM_TUTORIAL_BABI_DIR=DIR")
    parser.add_argument("--chapters", nargs="*", help="chapter prefixes to run (default: all)")
    parser.add_argument("--fresh-each", action="store_true", help="a new virtualenv per chapter (a new runtime)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(args.wheels)
        return 0
    if not any(args.wheels.glob("torch-*.whl")):
        print(f"no wheels in {args.wheels}: run `python benchmarks/colab_sim.py --prepare` first", file=sys.stderr)
        return 2
    notebooks = [p for p in student_notebooks()
                 if not args.chapters or any(p.parent.name.startswith(c) for c in args.chapters)]
    tmp = Path(tempfile.mkdtemp(prefix="colab-sim-"))
    results = {}
    t_all = time.time()
    try:
        source = archive(tmp / "mem-tutorial-main.zip")
        venv_seconds = []
        for k, nb in enumerate(notebooks):
            work = tmp / (f"run-{k}" if args.fresh_each or k == 0 else "run-0")
            if not (work / "venv").exists():
                work.mkdir(exist_ok=True)
                env = make_env(work, args.wheels, source, args.babi)
                t0 = time.time()
                run([sys.executable, "-m", "venv", work / "venv"], env=env)
                run([work / "venv" / "bin" / "python", "-m", "pip", "install", "-q", *PREINSTALLED], env=env)
                venv_seconds.append(round(time.time() - t0, 1))
            else:  # a new runtime: the course library is not there
                run([work / "venv" / "bin" / "python", "-m", "pip", "uninstall", "-q", "-y", "mem-tutorial"], env=env,
                    check=False, capture_output=True)
            folder = work / "content"  # Colab's working folder; the notebook is "uploaded" there
            folder.mkdir(exist_ok=True)
            target = folder / nb.name
            target.write_bytes(nb.read_bytes())
            out = work / f"{nb.stem}.json"
            (work / "runner.py").write_text(_RUNNER)
            proc = run([work / "venv" / "bin" / "python", work / "runner.py", target, out, folder],
                       env=env, check=False, capture_output=True, text=True)
            if not out.exists():
                results[nb.parent.name] = {"stopped_at": -1, "error": proc.stderr[-800:]}
            else:
                results[nb.parent.name] = json.loads(out.read_text())
            r = results[nb.parent.name]
            verdict = ("reached the end" if r.get("stopped_at") is None
                       else f"stopped at code cell {r['stopped_at']} of {r.get('code_cells', '?')}: {r['error']}")
            print(f"{nb.parent.name:<32} {verdict}  ({r.get('seconds', '?')} s; 'not passed yet' x{r.get('not_passed', 0)}"
                  f", skipped sections {r.get('skipped_sections', 0)})", flush=True)
            for line in r.get("setup_output", "").splitlines()[:3]:
                print(f"{'':<32}   setup cell: {line[:150]}")
        results["_meta"] = {"venv_install_seconds": venv_seconds, "total_seconds": round(time.time() - t_all, 1),
                            "babi": bool(args.babi), "python": sys.version.split()[0]}
        print(f"virtualenv with Colab's preinstalled packages: {venv_seconds} s; total {results['_meta']['total_seconds']} s")
    finally:
        if args.keep:
            print("kept", tmp)
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r.get("stopped_at") is None for k, r in results.items() if not k.startswith("_")) else 1


if __name__ == "__main__":
    sys.exit(main())
