"""Grade ONE submission in a scratch course, with its kernel in the sandbox (run as a separate process).

``python -m mem_tutorial.grading.grader JOB.json`` (started by :mod:`mem_tutorial.grading.autograde`):

1. *preflight*: each expected notebook is read as bytes and checked (size, UTF-8, JSON, a notebook, nbgrader
   metadata valid, unique cell ids -- repaired); a notebook that cannot be graded gets a one-line reason;
2. *integrity*: the submitted notebook is compared with the released copy (:mod:`integrity`);
3. a scratch nbgrader course is built in a private temporary folder: the template gradebook of the chapter (its
   definition only), the released files as "source" files, the student's files as the submission;
4. nbgrader's ``autograde`` runs there, with :class:`sandbox.SandboxExecute` in place of ``Execute`` and
   ``add_missing_cells`` on (deleted tests come back and run); every process of the sandbox user is killed after;
5. the scores are read from the scratch gradebook, the integrity verdicts applied, and ``result.json`` plus the
   autograded folder are written to the job's output folder. The course gradebook is not touched here: the
   parent process records the result (one writer, so parallel workers never contend for it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

MAX_NOTEBOOK_BYTES = 50 * 2**20
MAX_EXTRA_FILE_BYTES = 20 * 2**20
MAX_EXTRA_TOTAL_BYTES = 100 * 2**20
EXIT_TOOL_ERROR = 3


def submission_hash(folder: Path) -> str:
    """SHA-256 over the submission's regular files (names and contents), for idempotent re-runs."""
    h = hashlib.sha256()
    folder = Path(folder)
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                h.update(str(path.relative_to(folder)).encode() + b"\0")
                with open(path, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                h.update(b"\0")
    return h.hexdigest()


def preflight(path: Path) -> tuple[dict | None, str | None, list[str]]:
    """Read a submitted notebook defensively. Returns (notebook or None, reason it is ungradable, repairs)."""
    import warnings

    import nbformat
    from nbgrader.nbgraderformat import ValidationError as NbgValidationError
    from nbgrader.nbgraderformat.v3 import MetadataValidatorV3 as ValidatorV3

    repairs: list[str] = []
    try:
        size = path.stat().st_size
    except OSError as exc:
        return None, f"unreadable file: {exc.strerror}", repairs
    if size > MAX_NOTEBOOK_BYTES:
        return None, f"notebook too large ({size / 2**20:.0f} MiB > {MAX_NOTEBOOK_BYTES // 2**20} MiB)", repairs
    raw = path.read_bytes()
    if not raw.strip():
        return None, "empty file (0 bytes of JSON)", repairs
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not a Jupyter notebook (binary file, not UTF-8 text)", repairs
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", repairs
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list) or "nbformat" not in data:
        return None, "not a Jupyter notebook (JSON without 'cells' and 'nbformat')", repairs
    ids = [c.get("id") for c in data["cells"] if isinstance(c, dict) and c.get("id")]
    for cid in sorted({i for i in ids if ids.count(i) > 1}):
        repairs.append(f"duplicated cell id `{cid}` renamed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises many kinds
        return None, f"not a valid Jupyter notebook: {str(exc).splitlines()[0][:120]}", repairs
    validator = ValidatorV3()
    seen: set[str] = set()
    gids: dict[str, int] = {}
    for cell in nb.cells:  # a pasted copy of a graded cell keeps its grade id: nbgrader cannot grade that
        gid = (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
        if not gid:
            continue
        gids[gid] = gids.get(gid, 0) + 1
        if gids[gid] > 1:
            del cell["metadata"]["nbgrader"]
    for gid, n in sorted(gids.items()):
        if n > 1:
            repairs.append(f"duplicated cell `{gid}` ({n} copies): the first copy was graded, the others kept as "
                           "ordinary cells")
    for i, cell in enumerate(nb.cells):
        cid = cell.get("id")
        if not cid or cid in seen:
            cell["id"] = cid = f"cell-repaired-{i:04d}"
        seen.add(cid)
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is not None:
            try:
                validator.validate_cell(cell)
            except (NbgValidationError, Exception) as exc:  # invalid nbgrader metadata: drop it
                repairs.append(f"invalid nbgrader metadata dropped ({str(exc).splitlines()[0][:80]})")
                del cell["metadata"]["nbgrader"]
    if nb.metadata.get("kernelspec", {}).get("name") not in (None, "python3"):
        repairs.append(f"kernel {nb.metadata['kernelspec'].get('name')!r} replaced by python3")
    return nb, None, repairs


def _events(nb, timeout: int, memory_mb: int, file_mb: int = 64, nproc: int = 256) -> list[str]:
    """One-line notes about what happened while the notebook ran (timeouts, crashes, resource limits hit,
    output cut)."""
    from mem_tutorial.grading.sandbox import TRUNCATION_NOTE

    cut_marker = TRUNCATION_NOTE.strip().split(" after")[0]
    notes: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or cell.get("id", "?")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                ename = out.get("ename", "")
                if ename == "CellTimeoutError" or "Timeout" in ename:
                    notes.append(f"cell `{name}` timed out after {timeout} s (interrupted)")
                elif ename in ("DeadKernelError",) or "Kernel died" in out.get("evalue", ""):
                    notes.append(f"kernel died in cell `{name}`")
                elif ename == "MemoryError":
                    notes.append(f"cell `{name}` ran out of memory (limit {memory_mb} MiB)")
                elif "File too large" in out.get("evalue", "") or "[Errno 27]" in out.get("evalue", ""):
                    notes.append(f"cell `{name}` hit the file size limit ({file_mb} MiB per file)")
                elif ename == "BlockingIOError" or "Resource temporarily unavailable" in out.get("evalue", "") \
                        or "can't start new thread" in out.get("evalue", ""):
                    notes.append(f"cell `{name}` hit the process limit ({nproc} processes and threads)")
                elif ename == "KeyboardInterrupt" and not any(o.get("ename") == "CellTimeoutError"
                                                             for o in cell.get("outputs", [])):
                    notes.append(f"cell `{name}` interrupted at the {timeout} s timeout")
            elif out.get("output_type") == "stream" and cut_marker in str(out.get("text", "")):
                notes.append(f"output of cell `{name}` truncated")
    out, seen = [], set()
    for n in notes:
        if n not in seen:
            seen.add(n)
            out.append(n)
    return out


def _log_reason(log: str) -> str:
    for key, msg in (("UnresponsiveKernelError", "kernel stopped responding (infinite loop ignoring interrupts?)"),
                     ("DeadKernelError", "kernel died"), ("Kernel died", "kernel died"),
                     ("sandbox: could not set up", "sandbox could not start the kernel"),
                     ("MemoryError", "grader ran out of memory")):
        if key in log:
            return msg
    lines = [ln for ln in log.splitlines() if ln.strip()]
    return (lines[-1][:160] if lines else "nbgrader autograde failed")


def answer_hashes(nb) -> dict[str, str]:
    """Written answer (grade id) -> SHA-256 of its text: tells a changed answer from an unchanged resubmission."""
    out = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader") or {}
        if meta.get("grade") and meta.get("solution") and cell.cell_type == "markdown" and meta.get("grade_id"):
            out[meta["grade_id"]] = hashlib.sha256(cell.source.strip().encode("utf-8")).hexdigest()[:32]
    return out


def first_line(text: str, limit: int = 160) -> str:
    line = next((ln.strip() for ln in str(text or "").splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def lost_tests(result: dict) -> list[str]:
    """One note per automatically graded test that lost points: its name and its failure's first line."""
    out = []
    for nbres in result.get("notebooks", {}).values():
        grades = nbres.get("grades", {})
        for gid, t in sorted(nbres.get("tests", {}).items()):
            g = grades.get(gid, {})
            if g and g.get("kind") != "manual" and (g.get("auto_score") or 0.0) < (g.get("max_score") or 0.0):
                out.append(f"{gid} 0/{g.get('max_score', 0):g}: {first_line(t.get('message')) or 'failed'}")
        for gid, g in sorted(grades.items()):  # lost without a trusted run (e.g. zeroed by an integrity finding)
            if gid not in nbres.get("tests", {}) and g.get("kind") != "manual" and \
                    (g.get("auto_score") or 0.0) < (g.get("max_score") or 0.0) and "ungradable" not in nbres:
                out.append(f"{gid} 0/{g.get('max_score', 0):g}")
    return out


def wrong_chapter(nb, chapter: str, chapter_ids: dict) -> str | None:
    """Why a submitted notebook is not this chapter's (another chapter's notebook, or none of its exercises)."""
    ids = {(c.get("metadata", {}).get("nbgrader") or {}).get("grade_id") for c in nb.cells} - {None}
    mine = set(chapter_ids.get(chapter, []))
    if not mine or ids & mine:
        return None
    best = max(chapter_ids, key=lambda c: len(ids & set(chapter_ids[c])), default=None)
    if best and best != chapter and ids & set(chapter_ids[best]):
        return f"this is the notebook of chapter {best}, not of {chapter}"
    if ids:
        return (f"this notebook holds none of {chapter}'s exercises (it has {', '.join(sorted(ids)[:4])}"
                f"{', ...' if len(ids) > 4 else ''})")
    return None


def grade(job: dict) -> dict:
    import nbformat
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput,
                                        SaveAutoGrades)
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from traitlets.config import Config

    from mem_tutorial.grading import integrity, sandbox
    from mem_tutorial.grading.course import ensure_alembic_on_path

    t0 = time.time()
    student, chapter = job["student"], job["chapter"]
    template = Path(job["template"])
    submission = Path(job["submission"])
    out_dir = Path(job["out"])
    limits = sandbox.Limits(**job.get("limits", {}))
    result: dict = {"student": student, "chapter": chapter, "status": "graded", "reason": "", "flagged": False,
                    "findings": [], "events": [], "notebooks": {}, "timestamp": None,
                    "submission_hash": job.get("submission_hash"), "sandbox": "none"}
    ts_file = submission / "timestamp.txt"
    if ts_file.is_file() and not ts_file.is_symlink():
        from nbgrader.utils import parse_utc

        try:
            result["timestamp"] = parse_utc(ts_file.read_text()[:100].strip()).isoformat()
        except Exception:
            result["events"].append("unreadable timestamp.txt ignored")

    release = template / "release" / chapter
    names = sorted(p.stem for p in release.glob("*.ipynb"))
    base = Path(tempfile.mkdtemp(prefix="mt-grade-", dir=job.get("scratch") or None))
    from mem_tutorial.grading.autograde import mark_owner

    mark_owner(base)
    try:
        course = base / "course"
        (course / "submitted" / student / chapter).mkdir(parents=True)
        os.chmod(course, 0o700)
        shutil.copyfile(template / "gradebook.db", course / "gradebook.db")
        shutil.copytree(release, course / "source" / chapter,
                        ignore=shutil.ignore_patterns("*.ipynb", "*.py", "*.db", "__pycache__"))
        dest = course / "submitted" / student / chapter
        written_answers: dict[str, dict[str, str]] = {}
        usable = []
        reasons = []
        for name in names:
            path = submission / f"{name}.ipynb"
            if not path.is_file() or path.is_symlink():
                others = sorted(p.name for p in submission.glob("*.ipynb")) if submission.is_dir() else []
                hint = f" (found: {', '.join(others)})" if others else ""
                reasons.append(f"{name}.ipynb: no notebook of that name submitted{hint}")
                result["notebooks"][name] = {"ungradable": reasons[-1], "flagged": True}
                continue
            nb, why, repairs = preflight(path)
            if nb is not None:
                why = wrong_chapter(nb, chapter, job.get("chapter_ids") or {})
                nb = None if why else nb
            if nb is None:
                reasons.append(f"{name}.ipynb: {why}")
                result["notebooks"][name] = {"ungradable": why, "flagged": True}
                continue
            release_nb = json.loads((release / f"{name}.ipynb").read_text(encoding="utf-8"))
            findings = integrity.check_submission(nb, release_nb)
            for r in repairs:  # repaired structure is tampering too: flag it
                if r.startswith("duplicated cell"):
                    findings.append(integrity.Finding("duplicate_id", "", f"{r} (repaired)"))
                elif r.startswith("invalid nbgrader metadata"):
                    findings.append(integrity.Finding("metadata_changed", "", r))
            result["findings"] += [dict(f.as_dict(), notebook=name) for f in findings]
            written_answers[name] = answer_hashes(nb)
            result["events"] += [r for r in repairs if r.startswith("kernel")]
            nbformat.write(nb, dest / f"{name}.ipynb")
            usable.append(name)
        extra_total = 0
        if submission.is_dir():
            for src in sorted(submission.rglob("*")):
                rel = src.relative_to(submission)
                if src.is_symlink() or not src.is_file() or src.suffix == ".ipynb" and len(rel.parts) == 1:
                    continue
                size = src.stat().st_size
                if size > MAX_EXTRA_FILE_BYTES or extra_total + size > MAX_EXTRA_TOTAL_BYTES:
                    result["events"].append(f"file {rel} skipped (too large)")
                    continue
                extra_total += size
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest / rel)
        if result["timestamp"]:
            (dest / "timestamp.txt").write_text(result["timestamp"])

        if usable:
            policy = sandbox.prepare_box(str(base), student, chapter, int(job.get("worker", 0)), limits,
                                         hide=list(job.get("hide", [])) + [str(course)],
                                         isolate=job.get("isolate"), env=job.get("env"))
            result["sandbox"] = policy.mode
            from mem_tutorial.grading.session import GradingSession

            session = GradingSession(policy, release_dir=release, worker=int(job.get("worker", 0)),
                                     cache_dir=job.get("cache_dir"), zygote_path=job.get("zygote"),
                                     protected_dirs=[h for h in job.get("hide", [])
                                                     if os.path.basename(h) in ("solutions", "source")
                                                     and os.path.isdir(h)])
            sandbox.activate(policy, session)
            cfg = Config()
            cfg.CourseDirectory.root = str(course)
            cfg.CourseDirectory.course_id = job["course_id"]
            cfg.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
            cfg.CourseDirectory.source_directory = "source"
            cfg.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "*.py", "*.db"]
            cfg.Execute.timeout = limits.cell_timeout
            cfg.SandboxExecute.output_limit_kb = limits.output_kb
            cfg.OverwriteCells.add_missing_cells = True
            cfg.Autograde.create_student = True
            cfg.Autograde.autograde_preprocessors = [
                sandbox.SandboxExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades,
                AssignLatePenalties, CheckCellMetadata]
            ensure_alembic_on_path()
            api = NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)
            try:
                res = api.autograde(chapter, student, force=True, create=True)
            finally:
                session.close()
                sandbox.activate(None)
                sandbox.kill_sandbox_processes(policy.uid)
                sandbox.kill_sandbox_processes(session.answer_uid())
            log = (res.get("log") or "") + "\n" + (res.get("error") or "")
            result["log_tail"] = log[-3000:]
            graded_dir = course / "autograded" / student / chapter
            with Gradebook(f"sqlite:///{course / 'gradebook.db'}", job["course_id"]) as gb:
                try:
                    sub = gb.find_submission(chapter, student)
                except Exception:
                    sub = None
                for snb in (sub.notebooks if sub is not None else []):
                    if snb.name not in usable:
                        continue
                    nb_file = graded_dir / f"{snb.name}.ipynb"
                    if not res.get("success") or not nb_file.is_file():
                        why = _log_reason(log)
                        reasons.append(f"{snb.name}.ipynb: {why}")
                        result["notebooks"][snb.name] = {"ungradable": why, "flagged": True}
                        continue
                    tests = session.outcomes.get(snb.name, {})
                    result["notebooks"][snb.name] = {
                        "grades": {g.name: {"auto_score": (None if g.cell.cell_type == "markdown"
                                                           else float(g.auto_score or 0.0)),
                                            "max_score": g.max_score,
                                            "kind": "manual" if g.cell.cell_type == "markdown" else "auto",
                                            "needs_manual_grade": bool(g.needs_manual_grade)} for g in snb.grades},
                        "answers": written_answers.get(snb.name, {}),
                        "tests": {gid: {"passed": o.get("passed"), "no_credit": o.get("no_credit"),
                                        "message": (o.get("failure") or {}).get("message", ""),
                                        "where": (o.get("failure") or {}).get("where", "")}
                                  for gid, o in tests.items()},
                        "comments": {c.name: c.auto_comment for c in snb.comments if c.auto_comment},
                        "late_submission_penalty": snb.late_submission_penalty,
                        "flagged": False,
                    }
                    graded_nb = nbformat.read(nb_file, as_version=4)
                    result["events"] += _events(graded_nb, limits.cell_timeout, limits.memory_mb, limits.file_mb,
                                                limits.nproc)
            if graded_dir.is_dir():
                shutil.copytree(graded_dir, out_dir / "autograded", symlinks=True, dirs_exist_ok=True)
        # integrity verdicts: no credit for tests of answers that only call the library; flag tampering
        for f in result["findings"]:
            nbres = result["notebooks"].get(f["notebook"], {})
            nbres["flagged"] = True
            for gid in f.get("zero", []):
                if gid in nbres.get("grades", {}):
                    nbres["grades"][gid]["auto_score"] = 0.0
            if f["kind"] == "library_call":
                nbres.setdefault("comments", {})[f["cell"]] = f["message"]
        for nbres in result["notebooks"].values():  # an answer that reached the library: for the instructor to see
            if any(t.get("no_credit") for t in nbres.get("tests", {}).values()):
                nbres["flagged"] = True
        result["flagged"] = any(n.get("flagged") for n in result["notebooks"].values())
        score = max_score = 0.0
        for nbres in result["notebooks"].values():
            for g in nbres.get("grades", {}).values():
                score += g["auto_score"] or 0.0
                max_score += g["max_score"]
        result["score"] = score
        if not usable or all("ungradable" in result["notebooks"].get(n, {}) for n in names):
            result["status"] = "ungradable"
        lost = lost_tests(result)
        notes = reasons + [f["message"] for f in result["findings"]] + result["events"] + lost
        result["reason"] = "; ".join(dict.fromkeys(notes)) or "ok"
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result["seconds"] = round(time.time() - t0, 2)
    if job.get("started"):  # process start and imports, before grade() began
        result["startup_seconds"] = round(t0 - float(job["started"]), 2)
    return result


def _die_with_parent() -> None:
    """The grader ends when the autograde process that started it ends (even by ``kill -9``)."""
    try:
        import ctypes
        import ctypes.util

        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").prctl(1, signal.SIGTERM, 0, 0, 0)
    except Exception:
        return
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> int:
    job_file = Path(argv[0])
    _die_with_parent()
    job = json.loads(job_file.read_text(encoding="utf-8"))
    out_dir = Path(job["out"])
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        result = grade(job)
    except KeyboardInterrupt:
        return 130
    except Exception:
        (out_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        traceback.print_exc()
        return EXIT_TOOL_ERROR
    tmp = out_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, out_dir / "result.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
