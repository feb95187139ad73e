"""Instructor subcommands of ``mem-tutorial``: ``collect``, ``autograde``, ``feedback``, ``grades``.

Registered into the CLI by :func:`register` (called from :mod:`mem_tutorial.cli`). Each command works on the
course folder (``--root``, default: the repository) and its gradebook (``--db URL``; default: nbgrader's SQLite
``gradebook.db`` in the course folder; ``postgresql://user:password@host/dbname`` for a large course; the
environment variable ``MEM_TUTORIAL_DB`` works too, and keeps the password out of the shell history).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path


def _course(args):
    # jsonschema (under nbformat) builds the grammar of its optional IRI format checker when imported: ~1.6 s of
    # CPU for every command; no notebook or gradebook schema uses that format
    sys.modules.setdefault("rfc3987_syntax", None)
    from mem_tutorial.grading.course import Course
    from mem_tutorial.grading.release import repo_root

    root = Path(args.root).resolve() if getattr(args, "root", None) else repo_root(None)
    return Course(root, db_url=getattr(args, "db", None))


def cmd_collect(args) -> int:
    """Import submissions into submitted/<student>/<chapter>/ from a folder tree (<student>/<chapter>/<notebook>.ipynb)
    or from a learning-management-system zip download whose file names carry the student id."""
    from mem_tutorial.grading.collect import collect

    course = _course(args)
    report = collect(course, Path(args.source), chapter=args.chapter, pattern=args.pattern, dry_run=args.dry_run)
    print(report.format())
    if args.report:
        Path(args.report).write_text(report.format() + "\n", encoding="utf-8")
    return 0


def cmd_autograde(args) -> int:
    """Autograde collected submissions, each in its own sandbox; record the scores in the gradebook and print a
    table with a one-line reason per submission. Exit status 0 unless the tool itself failed."""
    from mem_tutorial.grading import sandbox
    from mem_tutorial.grading.autograde import autograde, format_table

    course = _course(args)
    cell_timeout = args.timeout or int(course.config.Execute.get("timeout", 60) or 60)
    limits = sandbox.Limits(cell_timeout=cell_timeout, memory_mb=args.memory_mb, output_kb=args.output_kb,
                            wall_seconds=args.wall or max(300, 12 * cell_timeout),
                            cpu_seconds=args.wall or max(300, 12 * cell_timeout))
    env = {} if not args.full else {"MEM_TUTORIAL_FAST": "0"}
    report = autograde(course, chapters=args.chapters, students=args.students, workers=args.workers,
                       limits=limits, force=args.force, progress=False if args.no_progress else None,
                       require_isolation=args.require_isolation, env=env, canary=not args.no_canary,
                       log=lambda m: print(m, file=sys.stderr))
    print(format_table(report, course))
    return report.exit_status


def cmd_feedback(args) -> int:
    """Write HTML feedback (scores, comments, test output) to feedback/<student>/<chapter>/ for graded submissions."""
    from mem_tutorial.grading.feedback import write_feedback

    course = _course(args)
    chapters = course.resolve_chapters(args.chapters)
    done = failed = 0
    for student, chapter in course.submissions(chapters, set(args.students) if args.students else None):
        if not any((course.autograded_dir / student / chapter).glob("*.ipynb")):
            reason = (course.read_result(student, chapter) or {}).get("reason", "not autograded yet")
            print(f"{student}/{chapter}: no feedback ({reason})")
            continue
        res = write_feedback(course, chapter, student)
        if res.get("success"):
            done += 1
            print(f"{student}/{chapter}: {course.feedback_dir / student / chapter}")
        else:
            failed += 1
            print(f"{student}/{chapter}: feedback failed: {(res.get('error') or res.get('log') or '').strip()[-300:]}")
    print(f"{done} feedback folder(s) written, {failed} failed")
    return 1 if failed else 0


CSV_FIELDS = ["student", "chapter", "notebook", "exercise", "kind", "score", "max_score", "auto_score",
              "manual_score", "needs_manual_grade", "flagged", "submitted", "reason", "notes"]


def cmd_exchange(args) -> int:
    """Set up nbgrader's exchange folder for a shared server (students fetch and submit through it) and print the
    configuration students need."""
    from mem_tutorial.grading.exchange import DEFAULT_ROOT, STUDENT_CONFIG, exchange_root, setup_exchange

    course = _course(args)
    path = args.path or exchange_root(course) or DEFAULT_ROOT
    for line in setup_exchange(path, group=args.group):
        print(line)
    if exchange_root(course) != path:
        print(f"\nadd to {course.root / 'nbgrader_config.py'}:\n    c.Exchange.root = \"{path}\"")
    print("\nstudents' configuration:\n" + STUDENT_CONFIG.format(root=path, course_id=course.course_id))
    print(f"release: nbgrader release_assignment CHAPTER (in {course.root}); students: nbgrader fetch_assignment "
          f"CHAPTER, then nbgrader submit CHAPTER; collect: nbgrader collect CHAPTER (a resubmission: "
          f"nbgrader collect --update CHAPTER), then mem-tutorial autograde CHAPTER")
    return 0


def cmd_release_feedback(args) -> int:
    """Release the feedback pages of exchange submissions to the students (nbgrader release_feedback, from a
    staging copy: feedback/ keeps only the pages); students run `nbgrader fetch_feedback CHAPTER`."""
    from mem_tutorial.grading.exchange import release_feedback

    course = _course(args)
    failed = 0
    for chapter in course.resolve_chapters(args.chapters):
        res = release_feedback(course, chapter, args.students)
        if not res.get("success"):
            failed += 1
            print(f"{chapter}: release_feedback failed: {(res.get('error') or res.get('log') or '').strip()[-300:]}")
        else:
            print(f"{chapter}: feedback released for {len(res.get('released', []))} student(s)")
    return 1 if failed else 0


def row_reason(row: dict, result: dict, manual: dict[str, str]) -> str:
    """Why one exercise of one submission has its score: the failing test's first message, the state of a
    written answer, or the submission's own problem (not gradable); "ok" when nothing was lost."""
    from mem_tutorial.grading.grader import first_line

    if row["kind"] == "manual":
        return manual.get(row["exercise"], "")
    test = result.get("tests", {}).get(row["notebook"], {}).get(row["exercise"])
    if test and not test.get("passed"):
        return first_line(test.get("message"), 300) or "failed"
    if (row["score"] or 0.0) < (row["max_score"] or 0.0):
        return first_line(result.get("reason"), 300) or "no points"
    return "ok"


def cmd_grades(args) -> int:
    """Export the gradebook: one CSV row per student, chapter and exercise (graded cell), with the reason for its
    score (the failing check's message, or the written answer's manual-grading state), and print totals."""
    course = _course(args)
    chapters = course.resolve_chapters(args.chapters) if args.chapters else None
    rows = course.grade_rows(chapters=chapters, students=set(args.students) if args.students else None)
    results, manual = {}, {}
    for r in rows:
        key = (r["student"], r["chapter"])
        if key not in results:
            results[key] = course.read_result(*key) or {}
            manual[key] = course.manual_status(*key)
        r["reason"] = row_reason(r, results[key], manual[key])
        r["notes"] = results[key].get("reason", "")
    out = sys.stdout if args.csv == "-" else open(args.csv, "w", newline="", encoding="utf-8")
    try:
        w = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})
    finally:
        if out is not sys.stdout:
            out.close()
    if args.csv != "-":
        totals: dict = {}
        for r in rows:
            t = totals.setdefault((r["student"], r["chapter"]), [0.0, 0.0, set()])
            t[0] += r["score"] or 0.0
            t[1] += r["max_score"] or 0.0
            if r["kind"] == "manual" and r["reason"] != "graded by hand":
                t[2].add(r["reason"].split(" (")[0])
        for (s, c), (sc, mx, manual_state) in sorted(totals.items()):
            extra = f"  ({'; '.join(sorted(manual_state))})" if manual_state else ""
            print(f"{s:<20} {c:<26} {sc:g}/{mx:g}{extra}")
        print(f"wrote {len(rows)} rows to {args.csv}")
    return 0


def _common(p) -> None:
    p.add_argument("--db", metavar="URL", default=os.environ.get("MEM_TUTORIAL_DB"),
                   help="gradebook database URL (default: sqlite gradebook.db in the course folder; e.g. "
                        "postgresql://user:password@host:5432/course; env MEM_TUTORIAL_DB)")
    p.add_argument("--root", default=argparse.SUPPRESS,
                   help="course root (default: the repository containing the current folder)")


def register(sub) -> None:
    """Add the instructor subcommands to the ``mem-tutorial`` parser's subparsers."""
    p = sub.add_parser("collect", help=cmd_collect.__doc__.split(";")[0], description=cmd_collect.__doc__)
    p.add_argument("source", help="folder tree <student>/<chapter>/<notebook>.ipynb, or an LMS .zip download")
    p.add_argument("--chapter", help="chapter of a zip download (needed when the notebook name does not tell)")
    p.add_argument("--pattern", help="regular expression for zip file names with named groups (?P<student>...) "
                                     "and optionally (?P<notebook>...); default: Canvas, Moodle and "
                                     "'<student>_<notebook>.ipynb' names")
    p.add_argument("--dry-run", action="store_true", help="report what would be imported; copy nothing")
    p.add_argument("--report", metavar="FILE", help="also write the report to FILE")
    _common(p)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("autograde", help="autograde submissions in a sandbox; print a table",
                       description=cmd_autograde.__doc__)
    p.add_argument("chapters", nargs="*", metavar="CHAPTER", help="e.g. 01 (default: all chapters)")
    p.add_argument("--students", nargs="+", metavar="ID", help="grade only these students")
    p.add_argument("--workers", type=int, default=1, help="submissions graded in parallel (default 1)")
    p.add_argument("--timeout", type=int, help="per-cell timeout in seconds (default: Execute.timeout of "
                                               "nbgrader_config.py)")
    p.add_argument("--wall", type=int, help="wall-clock limit per submission in seconds (default 12 x timeout)")
    p.add_argument("--memory-mb", type=int, default=3072, help="memory (address space) per kernel (default 3072)")
    p.add_argument("--output-kb", type=int, default=256, help="output kept per cell (default 256 KiB)")
    p.add_argument("--force", action="store_true", help="regrade submissions that are already graded")
    p.add_argument("--full", action="store_true", help="run notebooks in full mode (default: MEM_TUTORIAL_FAST=1)")
    p.add_argument("--require-isolation", action="store_true",
                   help="fail unless kernels can run as a separate user in a private mount namespace (root)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-canary", action="store_true",
                   help="skip the check that the instructor's solutions earn full marks in the sandbox first")
    _common(p)
    p.set_defaults(func=cmd_autograde)

    p = sub.add_parser("feedback", help="HTML feedback per student", description=cmd_feedback.__doc__)
    p.add_argument("chapters", nargs="*", metavar="CHAPTER")
    p.add_argument("--students", nargs="+", metavar="ID")
    _common(p)
    p.set_defaults(func=cmd_feedback)

    p = sub.add_parser("exchange", help="set up nbgrader's exchange folder on a shared server",
                       description=cmd_exchange.__doc__)
    p.add_argument("--path", help=f"exchange folder (default: c.Exchange.root of nbgrader_config.py, else "
                                  "/srv/nbgrader/exchange)")
    p.add_argument("--group", help="a Unix group of the course: mode 2770 for that group instead of 1777")
    _common(p)
    p.set_defaults(func=cmd_exchange)

    p = sub.add_parser("release-feedback", help="release feedback pages through the exchange",
                       description=cmd_release_feedback.__doc__)
    p.add_argument("chapters", nargs="*", metavar="CHAPTER")
    p.add_argument("--students", nargs="+", metavar="ID")
    _common(p)
    p.set_defaults(func=cmd_release_feedback)

    p = sub.add_parser("grades", help="export grades to CSV", description=cmd_grades.__doc__)
    p.add_argument("chapters", nargs="*", metavar="CHAPTER")
    p.add_argument("--csv", required=True, metavar="FILE", help="output CSV file ('-' for standard output)")
    p.add_argument("--students", nargs="+", metavar="ID")
    _common(p)
    p.set_defaults(func=cmd_grades)
