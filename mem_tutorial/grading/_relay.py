"""Kernel relay of the grading sandbox (standard library only; run as a script, not imported).

``python -I _relay.py ZYGOTE_SOCKET SPEC.json -- KERNEL_ARGV...`` is the command jupyter_client starts for a
sandboxed kernel. Instead of starting Python again (about 5 s of CPU with PyTorch), it asks the submission's fork
server (:mod:`mem_tutorial.grading.zygote`) for a kernel forked from a process that has everything imported, then
stands in for it: signals sent to the relay (interrupts, termination) are passed on to the kernel, the relay exits
with the kernel's exit status, and when the relay is killed the fork server kills the kernel.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys


def main(argv: list[str]) -> None:
    try:
        sep = argv.index("--")
    except ValueError:
        sys.exit("usage: _relay.py ZYGOTE_SOCKET SPEC.json -- KERNEL_ARGV...")
    sock_path, spec_path = argv[0], argv[1]
    cmd = argv[sep + 1:]
    if "ipykernel_launcher" in cmd:
        cmd = cmd[cmd.index("ipykernel_launcher") + 1:]
    with open(spec_path, encoding="utf-8") as fh:
        box = json.load(fh)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.connect(sock_path)
    conn.sendall(json.dumps({"op": "kernel", "box": box, "argv": cmd}).encode("utf-8"))
    reply = conn.recv(1 << 16)
    if not reply:
        sys.exit("mem-tutorial sandbox: the fork server refused to start a kernel")
    pid = int(json.loads(reply.decode("utf-8"))["pid"])

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)
    while True:
        try:
            data = conn.recv(1 << 16)
        except InterruptedError:
            continue
        if not data:
            os._exit(1)
        msg = json.loads(data.decode("utf-8"))
        if "exit" in msg:
            code = int(msg["exit"])
            os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main(sys.argv[1:])
