"""The ``mem-tutorial`` command: build and release notebooks, and (for instructors) grade a class.

Each subcommand is a small function over ``mem_tutorial.grading``; ``mem-tutorial COMMAND --help`` documents it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _root(args) -> Path:
    from mem_tutorial.grading.release import repo_root

    return repo_root(getattr(args, "root", None))


def cmd_build(args) -> int:
    """Convert the jupytext sources to solution notebooks and execute them in FAST mode."""
    from mem_tutorial.grading import release as rel

    root = _root(args)
    for chapter in rel.resolve_chapters(root, args.chapters):
        rel.build(root, chapter, execute=not args.no_execute)
    return 0


def cmd_release(args) -> int:
    """Regenerate the student notebooks in notebooks/ from solutions/ (through nbgrader)."""
    from mem_tutorial.grading import release as rel

    root = _root(args)
    chapters = rel.resolve_chapters(root, args.chapters)
    if args.check:
        problems = []
        for chapter in chapters:
            problems += rel.stale_solutions(root, chapter) + rel.stale_release(root, chapter)
        for p in problems:
            print(p)
        print("up to date" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    for chapter in chapters:
        if args.build:
            rel.build(root, chapter, execute=True)
        rel.release(root, chapter)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mem-tutorial",
        description="Course tooling for mem-tutorial: build solution notebooks, release student notebooks, grade.",
    )
    parser.add_argument("--root", help="course root (default: the repository containing the current folder)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("build", help=cmd_build.__doc__, description=cmd_build.__doc__)
    p.add_argument("chapters", nargs="*", metavar="CHAPTER", help="e.g. 01 or 01_memory_as_attention (default: all)")
    p.add_argument("--no-execute", action="store_true", help="convert only; do not run the notebook")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("release", help=cmd_release.__doc__, description=cmd_release.__doc__)
    p.add_argument("chapters", nargs="*", metavar="CHAPTER", help="e.g. 01 or 01_memory_as_attention (default: all)")
    p.add_argument("--build", action="store_true", help="rebuild and execute the solution notebooks first")
    p.add_argument("--check", action="store_true", help="only report stale solution or student notebooks (exit 1)")
    p.set_defaults(func=cmd_release)

    _register_extra_commands(sub)
    return parser


def _register_extra_commands(sub) -> None:
    """Instructor commands (collect, autograde, feedback, grades) live in mem_tutorial.grading.commands."""
    try:
        from mem_tutorial.grading import commands
    except ImportError:
        return
    commands.register(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"mem-tutorial {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
