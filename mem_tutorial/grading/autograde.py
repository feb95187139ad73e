"""Autograde a class: plan, grade each submission in its own sandboxed worker process, record, report.

* **one bad submission never stops the batch**: each submission is graded by its own process
  (:mod:`grader`) in a scratch course; whatever it does (invalid JSON, a duplicated cell id, a kernel crash,
  an endless loop past the wall-clock limit) ends as a result with a one-line reason;
* **one writer**: only this process writes the course gradebook, one submission per transaction, so
  ``--workers N`` never contend for SQLite and a PostgreSQL gradebook needs nothing special;
* **idempotent and resumable**: a submission is recorded, then its ``autograded/<student>/<chapter>/`` folder is
  replaced and its result file written last; a re-run skips submissions whose files have not changed since
  (``--force`` regrades), so a run that was interrupted (Ctrl-C, reboot) continues where it stopped;
* **canary first**: before any student, the instructor's own solution notebooks of each chapter are graded in
  the same sandbox, with the same limits; unless they earn every automatic point, nothing is graded and the
  run fails with the reason (a kernel that cannot import the library, a missing package or data set, a
  solution that no longer passes its own tests), instead of recording zeros for the whole class;
* **exit status**: 0 when every submission got a result, whatever the students' scores; non-zero only when the
  tool itself failed (gradebook unreachable, a chapter cannot be generated, the canary failed, a grader bug).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mem_tutorial.grading import sandbox
from mem_tutorial.grading.course import Course
from mem_tutorial.grading.grader import EXIT_TOOL_ERROR, submission_hash
from mem_tutorial.grading.session import ANSWER_UID_OFFSET

OWNER_FILE = ".mem-tutorial-owner"
STALE_PREFIXES = ("mt-autograde-", "mt-grade-", "mt-probe-")


def mark_owner(folder: Path) -> None:
    """Record which process owns a scratch folder (so a later run can tell it was left behind)."""
    (Path(folder) / OWNER_FILE).write_text(f"{os.getpid()} {_start_time(os.getpid())}", encoding="utf-8")


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def cleanup_stale(tmp: str | None = None) -> list[str]:
    """Remove scratch folders of grading runs whose process is gone (killed with ``kill -9``, a reboot, ...), and
    kill the grader processes such a run left running. Folders of a run still in progress are left alone."""
    tmp = tmp or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(tmp)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(tmp, name)
        if not name.startswith(STALE_PREFIXES) or not os.path.isdir(path) or os.path.islink(path):
            continue
        try:
            st = os.stat(path)
            if st.st_uid != os.geteuid():
                continue
            pid_text = Path(path, OWNER_FILE).read_text(encoding="utf-8").split()
            pid, started = int(pid_text[0]), pid_text[1]
        except (OSError, ValueError, IndexError):
            if time.time() - os.stat(path).st_mtime < 6 * 3600:  # unmarked and recent: maybe starting up
                continue
            pid, started = -1, "?"
        if pid > 0 and _start_time(pid) == started:
            continue  # still running
        _kill_graders_of(path)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _kill_graders_of(folder: str) -> None:
    """Kill processes whose command line names ``folder`` (graders of a run that was killed)."""
    mine = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == mine:
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as fh:
                cmd = fh.read().decode(errors="replace")
        except OSError:
            continue
        if folder in cmd:
            try:
                os.killpg(int(d), signal.SIGKILL)
            except OSError:
                try:
                    os.kill(int(d), signal.SIGKILL)
                except OSError:
                    pass


@dataclass
class Report:
    rows: list[dict] = field(default_factory=list)
    graded: int = 0
    skipped: int = 0
    failed: int = 0
    tool_errors: list[str] = field(default_factory=list)
    sandbox: str = ""
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def exit_status(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.tool_errors else 0


_GRADER_BOOT = """\
import sys, types
# jsonschema imports its optional IRI checker, whose grammar takes ~1.6 s of CPU to build; nbformat never uses it
sys.modules.setdefault("rfc3987_syntax", None)
# the grading modules need nothing of the package's own __init__ (which imports torch: ~2 s of CPU per process)
pkg = types.ModuleType("mem_tutorial")
pkg.__path__, pkg.__file__ = [{pkg!r}], {init!r}
sys.modules["mem_tutorial"] = pkg
from mem_tutorial.grading.grader import main
sys.exit(main(sys.argv[1:]))
"""


def grader_command(job_file: Path) -> list[str]:
    """The command of one grader process (``python -m mem_tutorial.grading.grader JOB`` without the start-up cost
    of imports the grader never uses: about 3.5 s of CPU per submission on a 2-core EPYC)."""
    pkg = Path(__file__).resolve().parents[1]
    return [sys.executable, "-c", _GRADER_BOOT.format(pkg=str(pkg), init=str(pkg / "__init__.py")), str(job_file)]


def _synthetic(student: str, chapter: str, reason: str, h: str | None) -> dict:
    return {"student": student, "chapter": chapter, "status": "error", "reason": reason, "flagged": True,
            "findings": [], "events": [], "notebooks": {}, "timestamp": None, "submission_hash": h,
            "score": 0.0, "sandbox": "none"}


class _Runner:
    def __init__(self, course: Course, run_dir: Path, templates: dict, limits: sandbox.Limits, isolate: bool,
                 env: dict, slots: list[int], zygotes: dict | None = None):
        self.zygotes = zygotes or {}
        self.course, self.run_dir, self.templates = course, run_dir, templates
        self.limits, self.isolate, self.env = limits, isolate, env
        self.free: queue.Queue[int] = queue.Queue()
        for i in slots:
            self.free.put(i)
        self.procs: dict[int, subprocess.Popen] = {}
        self.lock = threading.Lock()
        self.stopping = False

    def run(self, student: str, chapter: str, h: str, submission: Path | None = None
            ) -> tuple[dict, Path | None, str | None]:
        """Grade one submission in a worker process; returns (result, autograded folder, tool error).

        ``submission``: the folder to grade (default: the course's ``submitted/<student>/<chapter>``)."""
        if self.stopping:
            raise KeyboardInterrupt
        worker = self.free.get()
        try:
            job_dir = Path(tempfile.mkdtemp(prefix=f"job-{chapter}-", dir=self.run_dir))
            job = {"student": student, "chapter": chapter, "course_id": self.course.course_id,
                   "submission": str(submission or self.course.submitted_dir / student / chapter),
                   "template": str(self.templates[chapter]), "out": str(job_dir), "worker": worker,
                   "limits": asdict(self.limits), "hide": self.course.protected_paths() + [str(self.run_dir)],
                   "isolate": self.isolate, "env": self.env, "submission_hash": h,
                   "chapter_ids": self.course.chapter_grade_ids(), "cache_dir": str(self.run_dir),
                   "zygote": self.zygotes[worker].socket_path if worker in self.zygotes else None}
            with open(job_dir / "worker.log", "wb") as log:
                job["started"] = time.time()
                (job_dir / "job.json").write_text(json.dumps(job), encoding="utf-8")
                proc = subprocess.Popen(grader_command(job_dir / "job.json"), stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, cwd=str(job_dir))
                with self.lock:
                    self.procs[worker] = proc
                try:
                    rc = proc.wait(timeout=self.limits.wall_seconds)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    timed_out = True
                    self._stop(proc)
                    rc = proc.returncode
                finally:
                    with self.lock:
                        self.procs.pop(worker, None)
                    if self.isolate:
                        sandbox.kill_sandbox_processes(sandbox.sandbox_uid(worker))
                        sandbox.kill_sandbox_processes(sandbox.SANDBOX_UID_BASE + ANSWER_UID_OFFSET + worker)
            res_file = job_dir / "result.json"
            if res_file.is_file():
                return json.loads(res_file.read_text(encoding="utf-8")), job_dir / "autograded", None
            if self.stopping:
                raise KeyboardInterrupt
            if timed_out:
                return _synthetic(student, chapter, f"grading exceeded the wall-clock limit of "
                                                    f"{self.limits.wall_seconds} s (killed)", h), None, None
            tail = (job_dir / "worker.log").read_text(errors="replace").strip().splitlines()[-1:] or [""]
            if rc == EXIT_TOOL_ERROR:
                return (dict(_synthetic(student, chapter, f"grader error: {tail[0][:200]}", h), tool_error=True), None,
                        f"{student}/{chapter}: grader error: {tail[0][:200]} (see {job_dir}/error.txt)")
            how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit status {rc}"
            return _synthetic(student, chapter, f"grader process died ({how}): {tail[0][:120]}", h), None, None
        finally:
            self.free.put(worker)

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def stop_all(self) -> None:
        self.stopping = True
        with self.lock:
            procs = list(self.procs.values())
        for p in procs:
            self._stop(p)


def start_fork_servers(course: Course, run_dir: Path, templates: dict, slots: list[int], env: dict) -> dict:
    """One fork server per worker slot, shared by the submissions that worker grades (it imports PyTorch, IPython
    and the library once; every kernel, answer process and trusted runner of the run is forked from it)."""
    from mem_tutorial.grading.session import release_imports
    from mem_tutorial.grading.zygote import Zygote

    warm: list[str] = []
    for chapter, tpl in templates.items():
        for nb in sorted((Path(tpl) / "release" / chapter).glob("*.ipynb")):
            warm += [s for s in release_imports(nb) if s not in warm]
    protected = [p for p in course.protected_paths()
                 if os.path.basename(p) in ("solutions", "source") and os.path.isdir(p)]
    out = {}
    for i in slots:
        folder = run_dir / f"fork-server-{i}"
        folder.mkdir(mode=0o700)
        out[i] = Zygote(str(folder), protected_dirs=protected, log=str(folder / "log"), warm=warm,
                        env={k: v for k, v in env.items() if k.startswith("MEM_TUTORIAL_")})
    return out


CANARY_STUDENT = "instructor-solution"


def automatic_points(result: dict) -> tuple[float, float]:
    """(score, points available) of a grader result over its automatically graded cells. Written answers are
    left out: nbgrader gives them no automatic score and marks them ``needs_manual_grade``."""
    grades = [g for nbres in result.get("notebooks", {}).values() for g in nbres.get("grades", {}).values()
              if g.get("kind", "manual" if g.get("needs_manual_grade") else "auto") != "manual"]
    return sum(g.get("auto_score") or 0.0 for g in grades), sum(g.get("max_score") or 0.0 for g in grades)


def run_canary(runner: "_Runner", course: Course, chapters: list[str], run_dir: Path) -> list[str]:
    """Grade each chapter's solution notebooks (the course's ``source/<chapter>``) like a submission.

    Returns one message per chapter whose solutions do not earn every automatic point: the grading environment
    (or the solution) is broken, and grading students now would record wrong scores for all of them.
    """
    problems = []
    for chapter in chapters:
        folder = run_dir / "canary" / chapter
        folder.mkdir(parents=True)
        for path in sorted((course.source_dir / chapter).iterdir()):
            if path.is_file() and not path.is_symlink():
                shutil.copy2(path, folder / path.name)
        result, graded, _ = runner.run(CANARY_STUDENT, chapter, "", submission=folder)
        if graded is not None:
            shutil.rmtree(graded.parent, ignore_errors=True)
        score, total = automatic_points(result)
        if result.get("status") != "graded" or total == 0 or score < total:
            problems.append(f"canary: the instructor's solution of {chapter} scored {score:g}/{total:g} in the "
                            f"grading sandbox ({(result.get('reason') or 'no reason given')[:300]}); nothing was "
                            f"graded. Fix the environment or the solution (or pass --no-canary)")
    return problems


def autograde(course: Course, chapters=None, students=None, workers: int = 1, limits: sandbox.Limits | None = None,
              force: bool = False, progress: bool | None = None, require_isolation: bool = False,
              isolate: bool | None = None, env: dict | None = None, log=print, canary: bool = True) -> Report:
    """Grade the collected submissions of ``chapters`` (all) by ``students`` (all). See the module docstring.

    ``canary``: first grade the instructor's solutions (:func:`run_canary`) and stop if they lose points."""
    from tqdm import tqdm

    t0 = time.time()
    report = Report()
    limits = limits or sandbox.Limits()
    env = {"MEM_TUTORIAL_FAST": "1", **(env or {})}
    chapters = course.resolve_chapters(chapters)
    pairs = course.submissions(chapters, set(students) if students else None)
    if students:
        missing = sorted(set(students) - {s for s, _ in pairs})
        for s in missing:
            log(f"note: no collected submission for student {s!r}")
    # which need grading?
    with course.gradebook() as gb:
        known = {(sub.student.id, sub.assignment.name) for a in gb.assignments for sub in a.submissions}
    todo, hashes = [], {}
    for s, c in pairs:
        h = submission_hash(course.submitted_dir / s / c)
        hashes[(s, c)] = h
        prev = course.read_result(s, c)
        if not force and prev and prev.get("submission_hash") == h and (s, c) in known and not prev.get("tool_error"):
            report.skipped += 1
            report.rows.append(dict(_row(prev), state="up to date"))
        else:
            todo.append((s, c))
    # sandbox mode
    ok, why = sandbox.can_isolate()
    if isolate is None:
        isolate = ok
    removed = cleanup_stale()
    if removed:
        log(f"note: removed {len(removed)} folder(s) left by an interrupted earlier run")
    run_dir = Path(tempfile.mkdtemp(prefix="mt-autograde-"))
    os.chmod(run_dir, 0o700)
    mark_owner(run_dir)
    runner = lease = zygotes = None
    try:
        templates = {}
        for c in sorted({c for _, c in todo}):
            tpl = course.build_template(c, run_dir)
            course.sync_assignment(c, f"sqlite:///{tpl / 'gradebook.db'}")
            templates[c] = tpl
        slots = list(range(workers))
        if isolate:
            lease = sandbox.SlotLease(workers)
            slots = lease.slots
            for i in slots:  # left over by a run that crashed with these slots
                sandbox.kill_sandbox_processes(sandbox.sandbox_uid(i))
                sandbox.kill_sandbox_processes(sandbox.SANDBOX_UID_BASE + ANSWER_UID_OFFSET + i)
            probe_base = Path(tempfile.mkdtemp(prefix="mt-probe-"))
            policy = sandbox.prepare_box(str(probe_base), "probe", "probe", slots[0], limits, hide=[],
                                         isolate=True, env=env)
            try:
                good, msg = sandbox.probe(policy)
            finally:
                shutil.rmtree(probe_base, ignore_errors=True)
            if not good:
                if require_isolation:
                    report.tool_errors.append(f"sandbox isolation unavailable: {msg}")
                    return report
                why = f"isolation failed: {msg}"
                isolate = False
        elif require_isolation:
            report.tool_errors.append(f"sandbox isolation unavailable: {why}")
            return report
        report.sandbox = "isolated" if isolate else "basic"
        if not isolate:
            log(f"warning: basic sandbox only ({why}): student code runs as your user with resource limits "
                "in a scratch folder; run autograde as root (e.g. in a container) for full isolation")
        if not todo:
            log(f"nothing to grade: {report.skipped} submission(s) up to date (use --force to regrade)")
            return report
        zygotes = start_fork_servers(course, run_dir, templates, slots, env)
        runner = _Runner(course, run_dir, templates, limits, isolate, env, slots, zygotes)
        if canary:
            problems = run_canary(runner, course, sorted(templates), run_dir)
            if problems:
                report.tool_errors += problems
                for message in problems:
                    log(message)
                return report
        bar = tqdm(total=len(todo), desc="autograde", unit="sub", disable=(progress is False) or None,
                   file=sys.stderr)
        with cf.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(runner.run, s, c, hashes[(s, c)]): (s, c) for s, c in todo}
            try:
                for fut in cf.as_completed(futures):
                    s, c = futures[fut]
                    try:
                        result, folder, tool_error = fut.result()
                    except KeyboardInterrupt:
                        continue
                    except Exception as exc:  # a bug in the runner: report, keep going
                        result = dict(_synthetic(s, c, f"grader error: {exc}", hashes[(s, c)]), tool_error=True)
                        folder, tool_error = None, f"{s}/{c}: {exc!r}"
                    if tool_error:
                        report.tool_errors.append(tool_error)
                    course.record(result)
                    course.install_autograded(s, c, folder, _summary(result))
                    if folder is not None:
                        shutil.rmtree(folder.parent, ignore_errors=True)
                    report.rows.append(dict(_row(result), state="graded"))
                    report.graded += 1
                    report.failed += result.get("status") != "graded"
                    bar.set_postfix_str(f"{s}: {result.get('score', 0):g}")
                    bar.update(1)
            except KeyboardInterrupt:
                report.interrupted = True
                runner.stop_all()
                for f in futures:
                    f.cancel()
                log(f"\ninterrupted: {report.graded} graded and recorded; run the same command again to resume")
        bar.close()
    finally:
        if lease is not None:
            for i in lease.slots:
                sandbox.kill_sandbox_processes(sandbox.sandbox_uid(i))
            lease.release()
        shutil.rmtree(run_dir, ignore_errors=True)
        report.seconds = round(time.time() - t0, 1)
    return report


def _summary(result: dict) -> dict:
    keep = ("student", "chapter", "status", "reason", "flagged", "findings", "events", "score", "timestamp",
            "submission_hash", "sandbox", "seconds", "startup_seconds", "tool_error", "manual_changed")
    out = {k: result.get(k) for k in keep}
    nbs = result.get("notebooks", {})
    out["answers"] = {name: n.get("answers", {}) for name, n in nbs.items()}  # to notice a changed written answer
    out["tests"] = {name: n.get("tests", {}) for name, n in nbs.items()}
    out["max_score"] = sum(g["max_score"] for n in result.get("notebooks", {}).values()
                           for g in n.get("grades", {}).values())
    out["graded_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return out


def _row(result: dict) -> dict:
    return {"student": result.get("student"), "chapter": result.get("chapter"), "score": result.get("score"),
            "max_score": result.get("max_score"), "status": result.get("status"), "flagged": result.get("flagged"),
            "reason": result.get("reason", "")}


def manual_column(rows: list[dict], changed: dict) -> str:
    """The table's "manual" column for one submission: written answers still to grade by hand."""
    manual = [r for r in rows if r["kind"] == "manual"]
    if not manual:
        return "-"
    redo = [r["exercise"] for r in manual if r["exercise"] in changed and r["manual_score"] is None]
    pending = [r for r in manual if r["manual_score"] is None and r["exercise"] not in redo]
    parts = ([f"{len(pending)} pending"] if pending else []) + ([f"{len(redo)} changed"] if redo else [])
    return ", ".join(parts) or "graded"


def format_table(report: Report, course: Course | None = None) -> str:
    """The final table: one line per submission, with its manual-grading state and one-line reason."""
    rows = sorted(report.rows, key=lambda r: (r["chapter"] or "", r["student"] or ""))
    by_sub: dict = {}
    if course is not None:  # totals as recorded in the gradebook (manual scores included)
        for r in course.grade_rows():
            by_sub.setdefault((r["student"], r["chapter"]), []).append(r)
        for r in rows:
            grades = by_sub.get((r["student"], r["chapter"]))
            if grades:
                r["score"] = sum(g["score"] or 0.0 for g in grades)
                r["max_score"] = sum(g["max_score"] or 0.0 for g in grades)
                changed = (course.read_result(r["student"], r["chapter"]) or {}).get("manual_changed") or {}
                r["manual"] = manual_column(grades, changed)
    w = max([7] + [len(str(r["student"])) for r in rows])
    lines = [f"{'student':<{w}}  {'chapter':<24} {'score':>11}  {'status':<10} flag  {'manual':<19} reason"]
    for r in rows:
        score = f"{r['score'] or 0:g}/{r['max_score'] or 0:g}"
        lines.append(f"{r['student']:<{w}}  {r['chapter']:<24} {score:>11}  {r['status'] or '':<10} "
                     f"{'FLAG' if r['flagged'] else '    '}  {r.get('manual', '-'):<19} {(r['reason'] or '')[:300]}")
    lines.append(f"{report.graded} graded, {report.skipped} up to date, {report.failed} not gradable or failed; "
                 f"sandbox: {report.sandbox or '-'}; {report.seconds:g} s")
    if any("pending" in r.get("manual", "") or "changed" in r.get("manual", "") for r in rows):
        lines.append("manual: written answers to grade by hand in Formgrader (`mem-tutorial serve`); \"changed\" = "
                     "the student resubmitted a different answer, its earlier manual score no longer counts")
    for e in report.tool_errors:
        lines.append(f"TOOL ERROR: {e}")
    return "\n".join(lines)
