"""Shim that a job child starts through: die with the daemon, then exec the real command.

    python -m engine.service.child DAEMON_PID -- python -m engine run ...

Linux's PR_SET_PDEATHSIG makes the kernel SIGKILL the child when the daemon dies, even by
SIGKILL; it survives exec. It is set here rather than in a `preexec_fn` because the daemon
has threads, and code between fork and exec in a threaded process can deadlock. A daemon
that restarts also kills, by pid and command line, any child it finds still alive.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m engine.service.child DAEMON_PID -- COMMAND...", file=sys.stderr)
        return 2
    parent = int(argv[1])
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the restarted daemon's pid check still covers us
    if os.getppid() != parent:  # the daemon died before prctl took effect
        return 3
    cmd = argv[3:]
    os.execv(cmd[0], cmd)
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv))
