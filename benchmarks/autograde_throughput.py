"""Autograde throughput: generated Chapter 1 submissions, graded with 1 and 2 workers in the sandbox.

    python benchmarks/autograde_throughput.py --count 200 --workers 1 2

For each worker count a fresh course receives ``--count`` submissions (cycling through: the instructor's answers,
a wrong ``read``, the untouched stub, a wrong ``write``), ``mem-tutorial autograde`` grades them, and the gradebook
is checked: every student present exactly once, with the expected automatic score (no lost, duplicated or wrong
grade). Peak memory is the largest sum of resident memory over this process and all its descendants (graders and
sandboxed kernels), sampled every 0.2 s. Prints a table. Since the canary was added (third session), each run also grades the
instructor's solution once before the class, and the wall and CPU figures include it (about 8-15 s of CPU).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import hostile_class as hc  # noqa: E402


class PeakRSS:
    """Sum of RSS over a process tree, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every, self.peak, self._stop = pid, every, 0, threading.Event()

    def _tree_rss(self) -> int:
        children: dict[int, list[int]] = {}
        rss: dict[int, int] = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                ppid, pages = int(fields[1]), int(fields[21])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
            rss[int(d)] = pages * os.sysconf("SC_PAGE_SIZE")
        total, todo = 0, [self.pid]
        while todo:
            p = todo.pop()
            total += rss.get(p, 0)
            todo += children.get(p, [])
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree_rss())
            time.sleep(self.every)

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()


def variants(release, solved, fast: bool):
    base = hc.lean(solved) if fast else solved
    stub = hc.lean(release) if fast else release
    wrong_read = hc._answer(base, "read", "def read(memory, weights):\n    return memory.mean(1)\n")
    wrong_write = hc._answer(base, "write", "def write(memory, weights, erase, add):\n    return memory + add[:, None]\n")
    return [(hc._bytes(base), hc.AUTO_POINTS), (hc._bytes(wrong_read), hc.AUTO_POINTS - 1),
            (hc._bytes(stub), 0.0), (hc._bytes(wrong_write), hc.AUTO_POINTS - 2)]


def run(count: int, workers: int, timeout: int, lean: bool, scratch: Path) -> dict:
    from mem_tutorial.grading import sandbox
    from mem_tutorial.grading.autograde import autograde
    from mem_tutorial.grading.collect import collect
    from mem_tutorial.grading.course import Course

    course_root = hc.make_course(scratch / f"course-{workers}")
    kinds = variants(hc.release_notebook(), hc.solved_notebook(), lean)
    incoming = scratch / f"in-{workers}"
    expected = {}
    for i in range(count):
        blob, points = kinds[i % len(kinds)]
        d = incoming / f"s{i:03d}" / hc.CHAPTER
        d.mkdir(parents=True)
        (d / f"{hc.NOTEBOOK}.ipynb").write_bytes(blob)
        expected[f"s{i:03d}"] = points
    course = Course(course_root)
    collect(course, incoming)
    limits = sandbox.Limits(cell_timeout=timeout, wall_seconds=20 * timeout, cpu_seconds=20 * timeout)
    load0 = os.getloadavg()[0]
    with PeakRSS(os.getpid()) as mem:
        t0, r0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        c0 = time.process_time()
        report = autograde(course, ["01"], workers=workers, limits=limits, progress=True, log=lambda m: None)
        wall = time.time() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime) + (time.process_time() - c0)
    load1 = os.getloadavg()[0]
    got: dict[str, list[float]] = {}
    with course.gradebook() as gb:
        for sub in gb.find_assignment(hc.CHAPTER).submissions:
            auto = sum(g.auto_score or 0.0 for nb in sub.notebooks for g in nb.grades if g.cell.cell_type == "code")
            got.setdefault(sub.student.id, []).append(auto)
    lost = sorted(set(expected) - set(got))
    dup = sorted(s for s, v in got.items() if len(v) > 1)
    wrong = sorted(s for s, v in got.items() if s in expected and abs(v[0] - expected[s]) > 1e-9)
    for s in lost + dup + wrong:
        res = course.read_result(s, hc.CHAPTER) or {}
        print(f"  {s}: expected {expected.get(s)}, gradebook {got.get(s)}; {res.get('reason', '')[:300]}",
              file=sys.stderr)
    secs = [r.get("seconds") or 0.0 for s in expected if (r := course.read_result(s, hc.CHAPTER))]
    return {"workers": workers, "count": count, "wall": wall, "per_min": 60 * count / wall,
            "peak_mb": mem.peak / 2**20, "lost": len(lost), "dup": len(dup), "wrong": len(wrong),
            "sandbox": report.sandbox, "tool_errors": len(report.tool_errors), "cpu": cpu,
            "grade_s": sum(secs) / max(1, len(secs)), "load": (load0, load1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=200, help="submissions per run (default 200)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    p.add_argument("--timeout", type=int, default=120, help="per-cell timeout (s)")
    p.add_argument("--lean", action="store_true", help="submissions without the demo/training cells")
    p.add_argument("--keep", action="store_true", help="keep the scratch courses")
    args = p.parse_args(argv)
    os.environ.setdefault("MEM_TUTORIAL_FAST", "1")
    scratch = Path(tempfile.mkdtemp(prefix="mt-bench-"))
    rows = []
    try:
        for w in args.workers:
            rows.append(run(args.count, w, args.timeout, args.lean, scratch))
            print(f"  workers={w}: {rows[-1]['wall']:.1f} s", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    base = rows[0]["per_min"]
    print(f"{'workers':>7} {'subs':>5} {'wall s':>8} {'subs/min':>9} {'speedup':>8} {'peak MiB':>9} "
          f"{'lost':>5} {'dup':>4} {'wrong':>6} {'CPU s/sub':>9} {'wall s/sub':>10} {'load 1-min':>11} sandbox")
    for r in rows:
        print(f"{r['workers']:>7} {r['count']:>5} {r['wall']:>8.1f} {r['per_min']:>9.2f} {r['per_min'] / base:>8.2f} "
              f"{r['peak_mb']:>9.0f} {r['lost']:>5} {r['dup']:>4} {r['wrong']:>6} {r['cpu'] / r['count']:>9.2f} "
              f"{r['grade_s']:>10.1f} {r['load'][0]:>5.1f}-{r['load'][1]:<5.1f} {r['sandbox']}")
    print("CPU s/sub: user+system CPU of the graders and kernels (and this process) per submission; wall s/sub: "
          "mean time one grader spent on one submission (after its start-up); load: 1-minute load average "
          "before-after")
    return 0 if all(r["lost"] == r["dup"] == r["wrong"] == r["tool_errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
