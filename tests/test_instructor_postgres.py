"""The gradebook on PostgreSQL: a real server started by the test on loopback (Debian's binaries, run as an
unprivileged user), then collect -> autograde -> grades through the CLI with ``--db postgresql://...``."""

from __future__ import annotations

import csv
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import hostile_class as hc

ROOT = Path(__file__).resolve().parents[1]


def _pg_bin() -> Path | None:
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin"):
        for d in sorted(glob.glob(pattern), reverse=True):
            if Path(d, "initdb").is_file() and Path(d, "pg_ctl").is_file():
                return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: `apt-get install -y postgresql`")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("psycopg2 not installed: pip install 'mem-tutorial[course]'")
    run_as: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="mt-pg-"))  # directly in /tmp: reachable by the server's account
    if os.geteuid() == 0:  # initdb refuses root: run the server as the 'postgres' (or 'nobody') account
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None:
            pytest.skip("running as root and no unprivileged account (postgres, nobody) to run the server")
        run_as = ["runuser", "-u", user, "--"]
        pw = pwd.getpwnam(user)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data, port = base / "data", _free_port()
    subprocess.run(run_as + [str(bindir / "initdb"), "-D", str(data), "-U", "grader", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-t", "60",
                             "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        import psycopg2

        for _ in range(50):
            try:
                con = psycopg2.connect(host="127.0.0.1", port=port, user="grader", dbname="postgres")
                break
            except psycopg2.OperationalError:
                time.sleep(0.2)
        con.autocommit = True
        con.cursor().execute("CREATE DATABASE course")
        con.close()
        yield f"postgresql://grader@127.0.0.1:{port}/course"
    finally:
        subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def cli(*args: str, root: Path, db: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MEM_TUTORIAL_DB=db,
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return subprocess.run([sys.executable, "-W", "ignore", "-m", "mem_tutorial.cli", *args, "--root", str(root)],
                          capture_output=True, text=True, env=env, timeout=600)


def test_gradebook_on_postgresql(postgres, tmp_path):
    from mem_tutorial.grading.course import Course

    root = hc.make_toy_course(tmp_path / "course")
    release = hc.toy_release(root, tmp_path / "scratch")
    incoming = tmp_path / "in"
    for who, body in [("ann", "return x * x"), ("ben", "return x + x"), ("cy", "raise NotImplementedError()")]:
        (incoming / who / "01_toy").mkdir(parents=True)
        (incoming / who / "01_toy" / "toy.ipynb").write_bytes(hc.toy_answer(release, body))
    assert cli("collect", str(incoming), root=root, db=postgres).returncode == 0
    ag = cli("autograde", "--workers", "2", "--no-progress", root=root, db=postgres)
    assert ag.returncode == 0, ag.stdout + ag.stderr
    assert not (root / "gradebook.db").exists(), "the SQLite gradebook must not be used with --db"
    rows = Course(root, db_url=postgres).grade_rows()
    auto = {r["student"]: r["auto_score"] for r in rows if r["exercise"] == "test_square"}
    assert auto == {"ann": 3.0, "ben": 0.0, "cy": 0.0}
    out = tmp_path / "grades.csv"
    # --db on the command line works as well as the environment variable
    env_less = cli("grades", "--csv", str(out), "--db", postgres, root=root, db="")
    assert env_less.returncode == 0, env_less.stderr
    got = {(r["student"], r["exercise"]): r["score"] for r in csv.DictReader(out.open())}
    assert got[("ann", "test_square")] == "3.0" and got[("ben", "why")] == "0.0"
    again = cli("autograde", "--workers", "2", "--no-progress", root=root, db=postgres)
    assert "0 graded, 3 up to date" in again.stdout
