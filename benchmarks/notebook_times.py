"""Wall time of each solution notebook executed top to bottom in FAST mode (what CI, nbval and every autograded
submission pay), and of the whole notebook under the paper-scale configuration when asked.

    python benchmarks/notebook_times.py [CHAPTER ...] [--full]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from mem_tutorial.grading import release as rel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*")
    parser.add_argument("--full", action="store_true", help="run with MEM_TUTORIAL_FAST=0 (paper scale)")
    args = parser.parse_args()
    root = rel.repo_root(Path(__file__).parent)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    print(f"{'chapter':28s} {'notebook':40s} {'seconds':>8s}")
    for chapter in rel.resolve_chapters(root, args.chapters):
        for src in rel.sources(root, chapter):
            nb = rel.source_to_notebook(src)
            start = time.perf_counter()
            rel.execute_notebook(nb, src.parent, env={"MEM_TUTORIAL_FAST": "0" if args.full else "1"})
            print(f"{chapter:28s} {src.stem:40s} {time.perf_counter() - start:8.1f}")


if __name__ == "__main__":
    main()
