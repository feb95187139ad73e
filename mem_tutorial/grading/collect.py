"""Bring submissions into the course: ``submitted/<student>/<chapter>/<notebook>.ipynb`` plus ``timestamp.txt``.

Two sources:

* a **folder tree** ``<student>/<chapter>/<notebook>.ipynb`` (e.g. copied from JupyterHub home folders, or
  nbgrader's exchange); the chapter folder may be written ``01`` or ``01_memory_as_attention``;
* a **zip download from a learning-management system**, where the file (or its folder) name carries the student
  id: Canvas ``doejane_12345_678901_memory_as_attention.ipynb`` (also ``_LATE_`` and ``-1`` resubmissions),
  Moodle ``Jane Doe_12345_assignsubmission_file_/memory_as_attention.ipynb``, or plain
  ``<student>_<notebook>.ipynb`` / ``<student>/<notebook>.ipynb``; ``--pattern`` takes any regular expression
  with a ``student`` group (and optionally ``notebook``). A zip holding a folder tree works as well.

Everything that could not be matched is listed with its reason: no student id in the name, an unknown chapter,
a notebook whose name matches none of the chapter's notebooks (it is still copied, under its own name, so the
instructor can rename it; autograde reports the student's notebook as missing), unsafe paths, links, oversized
files. Re-collecting identical files changes nothing (autograde then has nothing new to grade).
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MAX_FILE_BYTES = 50 * 2**20
MAX_ZIP_TOTAL_BYTES = 4 * 2**30
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
LMS_PATTERNS = [
    # Canvas: lastfirst[_LATE]_<user id>_<submission id>_<original name>[-N].ipynb
    r"^(?:.*/)?(?P<name>[a-z]+)(?:_LATE)?_(?P<student>\d+)_\d+_(?P<notebook>[^/]+)$",
    # Moodle: "<Full Name>_<id>_assignsubmission_file_/<original name>"
    r"^(?:.*/)?[^/]*?_(?P<student>\d+)_assignsubmission_file_/?(?P<notebook>[^/]+)$",
    # plain: <student>_<notebook>.ipynb, <student>-<notebook>.ipynb or <student>/<notebook>.ipynb
    r"^(?:.*/)?(?P<student>[A-Za-z0-9][A-Za-z0-9.@+-]*)[_/-](?P<notebook>[^/]+)$",
]
_RESUBMIT = re.compile(r"(?:-\d+| \(\d+\)|_\d+)$")


@dataclass
class CollectReport:
    imported: list[tuple[str, str, str]] = field(default_factory=list)
    """(student, chapter, file) copied into submitted/."""
    unchanged: list[tuple[str, str]] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)
    """(file in the source, reason) for everything not imported as an expected notebook."""
    dry_run: bool = False

    def students(self) -> set[str]:
        return {s for s, _, _ in self.imported} | {s for s, _ in self.unchanged}

    def format(self) -> str:
        lines = []
        verb = "would import" if self.dry_run else "imported"
        for s, c, f in sorted(self.imported):
            lines.append(f"{verb:>12}  {s}/{c}/{f}")
        for s, c in sorted(self.unchanged):
            lines.append(f"{'unchanged':>12}  {s}/{c}")
        for f, why in sorted(self.unmatched):
            lines.append(f"{'UNMATCHED':>12}  {f}: {why}")
        n_sub = len({(s, c) for s, c, _ in self.imported})
        lines.append(f"{n_sub} submission(s) {verb} for {len(self.students())} student(s), "
                     f"{len(self.unchanged)} unchanged, {len(self.unmatched)} file(s) unmatched")
        return "\n".join(lines)


def _norm_nb(name: str) -> str:
    stem = name[:-6] if name.lower().endswith(".ipynb") else name
    stem = _RESUBMIT.sub("", stem.strip())
    return stem.lower().replace(" ", "_")


def match_notebook(course, chapter: str, filename: str) -> tuple[str | None, str]:
    """The chapter notebook ``filename`` is a submission of, or (None, reason with the closest name)."""
    names = course.notebook_names(chapter)
    if filename in (f"{n}.ipynb" for n in names):
        return filename[:-6], ""
    want = {_norm_nb(n): n for n in names}
    got = _norm_nb(filename)
    if got in want:
        return want[got], ""
    close = difflib.get_close_matches(got, list(want), n=1, cutoff=0.5)
    hint = f"; did you mean {want[close[0]]}.ipynb?" if close else ""
    return None, (f"notebook name matches none of {chapter}'s notebooks "
                  f"({', '.join(n + '.ipynb' for n in names)}){hint}")


def _chapter_of(course, name: str) -> str | None:
    try:
        return course.resolve_chapters([name])[0]
    except ValueError:
        return None


@dataclass
class _Item:
    student: str
    chapter: str
    relpath: str  # path inside the submission folder
    data: bytes
    mtime: dt.datetime
    origin: str
    notebook_ok: bool = True


def _tree_items(course, src: Path, report: CollectReport) -> list[_Item]:
    items = []
    for sdir in sorted(src.iterdir()):
        if not sdir.is_dir() or sdir.is_symlink():
            report.unmatched.append((str(sdir.relative_to(src)), "not a student folder"))
            continue
        if not STUDENT_ID.match(sdir.name):
            report.unmatched.append((sdir.name, "folder name is not a valid student id"))
            continue
        for cdir in sorted(sdir.iterdir()):
            rel = str(cdir.relative_to(src))
            chapter = _chapter_of(course, cdir.name) if cdir.is_dir() and not cdir.is_symlink() else None
            if chapter is None:
                report.unmatched.append((rel, "not a chapter folder of this course (expected "
                                              f"<student>/<chapter>/; chapters: {', '.join(course.chapters())})"))
                continue
            for path in sorted(cdir.rglob("*")):
                rp = str(path.relative_to(src))
                if path.is_symlink():
                    report.unmatched.append((rp, "symbolic link (skipped)"))
                    continue
                if not path.is_file():
                    continue
                size = path.stat().st_size
                if size > MAX_FILE_BYTES:
                    report.unmatched.append((rp, f"file too large ({size / 2**20:.0f} MiB)"))
                    continue
                mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc)
                items.append(_Item(sdir.name, chapter, str(path.relative_to(cdir)), path.read_bytes(), mtime, rp))
    return items


def _zip_items(course, src: Path, chapter: str | None, pattern: str | None, report: CollectReport) -> list[_Item]:
    items = []
    patterns = [re.compile(pattern)] if pattern else [re.compile(p) for p in LMS_PATTERNS]
    total = 0
    with zipfile.ZipFile(src) as zf:
        for info in zf.infolist():
            name = info.filename
            if info.is_dir():
                continue
            pp = PurePosixPath(name)
            if pp.is_absolute() or ".." in pp.parts or "\\" in name:
                report.unmatched.append((name, "unsafe path in zip (skipped)"))
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                report.unmatched.append((name, "symbolic link (skipped)"))
                continue
            if pp.name.startswith(".") or "__MACOSX" in pp.parts:
                continue
            if info.file_size > MAX_FILE_BYTES or total + info.file_size > MAX_ZIP_TOTAL_BYTES:
                report.unmatched.append((name, f"file too large ({info.file_size / 2**20:.0f} MiB)"))
                continue
            total += info.file_size
            mtime = dt.datetime(*info.date_time, tzinfo=dt.timezone.utc)
            # a folder tree inside the zip: [prefix/]<student>/<chapter>/<file>
            if len(pp.parts) >= 3:
                ch = _chapter_of(course, pp.parts[-2])
                if ch and STUDENT_ID.match(pp.parts[-3]):
                    items.append(_Item(pp.parts[-3], ch, pp.name, zf.read(info), mtime, name))
                    continue
            m = next((m for m in (p.match(name) for p in patterns) if m and m.group("student")), None)
            if m is None:
                report.unmatched.append((name, "no student id found in the file name"))
                continue
            student = m.group("student")
            if not STUDENT_ID.match(student):
                report.unmatched.append((name, f"student id {student!r} is not valid"))
                continue
            fname = m.groupdict().get("notebook") or pp.name
            ch = chapter
            if ch is None:  # infer from the notebook name
                hits = [c for c in course.chapters() if match_notebook(course, c, fname)[0]]
                if len(hits) != 1:
                    report.unmatched.append((name, "cannot tell the chapter from the name: pass --chapter"))
                    continue
                ch = hits[0]
            items.append(_Item(student, ch, fname, zf.read(info), mtime, name))
    return items


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for k in sorted(files):
        h.update(k.encode() + b"\0" + files[k] + b"\0")
    return h.hexdigest()


def collect(course, source: Path, chapter: str | None = None, pattern: str | None = None,
            dry_run: bool = False) -> CollectReport:
    """Import submissions from a folder tree or an LMS zip into ``course``'s ``submitted/`` folder."""
    source = Path(source)
    report = CollectReport(dry_run=dry_run)
    if chapter is not None:
        chapter = course.resolve_chapters([chapter])[0]
    if source.is_dir():
        items = _tree_items(course, source, report)
    elif source.is_file() and zipfile.is_zipfile(source):
        items = _zip_items(course, source, chapter, pattern, report)
    else:
        raise FileNotFoundError(f"{source}: neither a folder nor a zip file")
    # group per submission; map notebook names; the newest of duplicated files wins
    subs: dict[tuple[str, str], dict[str, _Item]] = {}
    for it in items:
        rel = it.relpath
        if rel.lower().endswith(".ipynb") and "/" not in rel:
            nb, why = match_notebook(course, it.chapter, rel)
            if nb is None:
                report.unmatched.append((it.origin, why))
                it.notebook_ok = False
            else:
                rel = f"{nb}.ipynb"
        if rel == "timestamp.txt":
            continue  # written by collect, never taken from a student
        group = subs.setdefault((it.student, it.chapter), {})
        if rel in group:
            older = min(group[rel], it, key=lambda x: x.mtime)
            report.unmatched.append((older.origin, "older duplicate of a resubmitted file (ignored)"))
            if older is group[rel]:
                group[rel] = it
        else:
            group[rel] = it
    for (student, ch), files in sorted(subs.items()):
        data = {rel: it.data for rel, it in files.items()}
        stamp = max(it.mtime for it in files.values()).isoformat()
        target = course.submitted_dir / student / ch
        old = {}
        if target.is_dir():
            for p in target.rglob("*"):
                if p.is_file() and not p.is_symlink() and p.name != "timestamp.txt":
                    old[str(p.relative_to(target))] = p.read_bytes()
        if old and _digest(old) == _digest(data):
            report.unchanged.append((student, ch))
            continue
        for rel, it in sorted(files.items()):
            report.imported.append((student, ch, rel))
        if dry_run:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{ch}-", dir=target.parent))
        for rel, blob in data.items():
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(blob)
        (tmp / "timestamp.txt").write_text(stamp + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    return report
