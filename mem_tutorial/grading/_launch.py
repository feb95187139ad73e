"""Kernel launcher of the grading sandbox (standard library only; run as a script, not imported).

``python -I _launch.py SPEC.json -- KERNEL_ARGV...`` applies the sandbox described in SPEC (written by
:mod:`mem_tutorial.grading.sandbox`) to the current process, then ``exec``\\ s the kernel:

1. resource limits (address space, CPU seconds, file size, processes, open files, no core dumps);
2. when the spec asks for isolation (the grader runs as root on Linux): a private mount namespace in which the
   instructor's folders (the course's source/solutions, submissions, gradebook, ...) are covered by empty
   read-only mounts, and the folders the interpreter needs are made reachable for the unprivileged user;
3. the kernel's connection file is copied into the sandbox's home, all groups are dropped and the process
   switches to the sandbox's own user id, with ``no_new_privs`` set (setuid programs cannot regain root);
4. a scrubbed environment (no credentials of the grader leak into student code) and the working folder that
   holds only the student's files.

It never falls back silently: if an isolation step fails it exits with status 97 and a message, so the kernel
does not start and the grader reports the sandbox failure instead of running student code unconfined.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import resource
import shutil
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS = 38
EXIT_SANDBOX_FAILED = 97

_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    _check(_c().mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {src} -> {target}")


def _umount(target) -> None:
    _check(_c().umount2(os.fsencode(target), MNT_DETACH), f"umount {target}")


def unshare(flags: int) -> None:
    _check(_c().unshare(flags), f"unshare({flags:#x})")


def set_limits(limits: dict) -> None:
    def lim(kind, soft, hard=None):
        if soft is None:
            return
        resource.setrlimit(kind, (int(soft), int(hard if hard is not None else soft)))

    lim(resource.RLIMIT_CORE, 0)
    if limits.get("memory_bytes"):
        lim(resource.RLIMIT_AS, limits["memory_bytes"])
    if limits.get("cpu_seconds"):
        lim(resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 5)
    if limits.get("file_bytes"):
        lim(resource.RLIMIT_FSIZE, limits["file_bytes"])
    if limits.get("nofile"):
        lim(resource.RLIMIT_NOFILE, limits["nofile"])
    if limits.get("nproc"):
        lim(resource.RLIMIT_NPROC, limits["nproc"])


def isolate(spec: dict) -> None:
    """Private mount namespace showing the kernel only what it needs.

    Every top-level folder that is not part of the operating system (``/home``, ``/root``, ``/tmp``, ``/work``,
    ``/srv``, ``/var``, ...: the ``mask`` list) is covered by an empty tmpfs; the folders the kernel needs (the
    interpreter, the virtual environment, the ``mem_tutorial`` package, the sandbox's own folder: ``expose``) are
    bound back at their own paths, read-only except the sandbox folder. Then the instructor's remaining paths
    (``hide``) are covered too. Other students' folders, the course, the solutions and the gradebook are not
    in this view of the file system at all.
    """
    # a private mount namespace, and a private IPC namespace (System V shared memory, semaphores and POSIX message
    # queues would otherwise be channels between students' kernels)
    _check(_c().unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare(CLONE_NEWNS | CLONE_NEWIPC)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    stage_root = "/dev/shm"
    _mount("tmpfs", stage_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=256m")
    staged = []
    for i, (path, writable) in enumerate(spec.get("expose", [])):
        if not os.path.exists(path):
            continue
        stage = os.path.join(stage_root, f".stage{i}")
        os.mkdir(stage)
        _mount(path, stage, None, MS_BIND | MS_REC)
        staged.append((path, stage, writable))
    for top in spec.get("mask", []):
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
    for path, stage, writable in staged:
        os.makedirs(path, exist_ok=True)
        _mount(stage, path, None, MS_BIND | MS_REC)
        if not writable:
            _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        _umount(stage)
        os.rmdir(stage)
    for top in spec.get("mask", []):
        _mount(None, top, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
    for path in ("/dev/mqueue", "/dev/hugepages"):  # host-wide folders under /dev (/dev/shm is private above)
        if os.path.isdir(path) and os.path.ismount(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "mode=000,size=4k")
    for path in spec.get("hide", []):
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "mode=000,size=4k")
        elif os.path.isfile(path):
            _mount("/dev/null", path, None, MS_BIND)


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError("could not switch to the sandbox user")
    _check(_c().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


def copy_connection_file(cmd: list[str], home: str, uid: int | None, gid: int | None) -> list[str]:
    cmd = list(cmd)
    for i, arg in enumerate(cmd[:-1]):
        if arg in ("-f", "--f", "--ConnectionFileMixin.connection_file"):
            src = cmd[i + 1]
            dst = os.path.join(home, "kernel-connection.json")
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600)
            if uid is not None:
                os.chown(dst, uid, gid)
            cmd[i + 1] = dst
    return cmd


def main(argv: list[str]) -> None:
    try:
        sep = argv.index("--")
    except ValueError:
        sys.exit("usage: _launch.py SPEC.json -- KERNEL_ARGV...")
    with open(argv[0], encoding="utf-8") as fh:
        spec = json.load(fh)
    cmd = argv[sep + 1:]
    uid, gid = spec.get("uid"), spec.get("gid")
    try:
        cmd = copy_connection_file(cmd, spec["home"], uid, gid)
        if spec.get("isolate"):
            isolate(spec)
        set_limits(spec.get("limits", {}))
        if uid is not None:
            drop_privileges(uid, gid)
        os.umask(0o077)
        os.chdir(spec["workdir"])
    except Exception as exc:  # never run student code unconfined
        sys.stderr.write(f"mem-tutorial sandbox: could not set up the sandbox: {exc}\n")
        sys.stderr.flush()
        os._exit(EXIT_SANDBOX_FAILED)
    env = dict(spec.get("env", {}))
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main(sys.argv[1:])
