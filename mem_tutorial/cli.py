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
        from mem_tutorial.publishing import update_readme

        if update_readme(root, check=True):
            problems.append("README.md: the course-links block is stale: run `mem-tutorial release`")
        for p in problems:
            print(p)
        print("up to date" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    for chapter in chapters:
        if args.build:
            rel.build(root, chapter, execute=True)
        rel.release(root, chapter)
    from mem_tutorial.publishing import update_readme

    if update_readme(root):
        print("README.md: course links updated")
    return 0


def cmd_publish(args) -> int:
    """Retarget the published course (badges, Colab links, the setup cells' install source, README links) to a
    GitHub repository and branch, in one command: writes [tool.mem-tutorial] in pyproject.toml and regenerates."""
    from mem_tutorial import publishing

    root = _root(args)
    current = publishing.read_config(root)
    if not args.repository and not args.branch:
        print(f"published at {current.repository}, branch {current.branch}; Colab installs {current.archive}")
        return 0
    target = publishing.Published(args.repository or current.repository, args.branch or current.branch)
    publishing.publish(root, target)
    return 0


def cmd_workspace(args) -> int:
    """Copy the student notebooks into your own folder (default ./my-work/) to work in; never overwrites a file
    that is already there (it lists what it kept), so `git pull` never conflicts with your work."""
    from mem_tutorial import publishing

    try:
        root = _root(args)
    except FileNotFoundError:  # outside the repository: the clone this library was installed from (pip install -e)
        root = Path(__file__).resolve().parents[1]
        if not (root / "notebooks").is_dir():
            raise
    publishing.workspace(root, Path(args.dir).expanduser().resolve())
    return 0


def cmd_serve(args) -> int:
    """Instructors: run JupyterLab on the course root (solutions/, notebooks/, the gradebook), so Formgrader's
    links resolve. Extra arguments go to `jupyter lab`."""
    import os
    import shutil

    root = _root(args)
    jupyter = Path(sys.executable).with_name("jupyter")
    exe = str(jupyter) if jupyter.exists() else (shutil.which("jupyter") or "jupyter")
    argv = [exe, "lab", f"--ServerApp.root_dir={root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")
    argv += list(getattr(args, "jupyter_args", None) or [])
    print(" ".join(argv), flush=True)
    if args.dry_run:
        return 0
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    os.chdir(root)
    os.execv(exe, argv)
    return 0  # pragma: no cover


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

    p = sub.add_parser("publish", help=cmd_publish.__doc__, description=cmd_publish.__doc__)
    p.add_argument("--repository", metavar="OWNER/NAME", help="GitHub repository the course is published at")
    p.add_argument("--branch", help="branch of that repository (default: keep the current one)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("workspace", help=cmd_workspace.__doc__, description=cmd_workspace.__doc__)
    p.add_argument("dir", nargs="?", default="my-work", metavar="DIR", help="your folder (default: ./my-work)")
    p.set_defaults(func=cmd_workspace)

    p = sub.add_parser("serve", help=cmd_serve.__doc__, description=cmd_serve.__doc__)
    p.add_argument("--dry-run", action="store_true", help="only print the jupyter command")
    p.set_defaults(func=cmd_serve)

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
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "serve":  # only serve passes unknown arguments on (to jupyter lab)
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.jupyter_args = extra
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"mem-tutorial {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
