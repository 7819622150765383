"""Child entry point: serve a GGUF model with xllamacpp's llama.cpp HTTP server until told to stop.

Run by `engine.local.llm.EmbeddedLLM` as ``python _llm_child.py '<json>' READY_FD`` (by file
path, so it needs only the standard library and xllamacpp, never the engine package).
It reports ``{"base_url": ...}`` on READY_FD once the server listens, then exits when
stdin reaches EOF (the parent closed it or died) or when its parent pid changes.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
from typing import Any

# Poll interval for the parent-pid check; stdin EOF usually wakes us much sooner.
_WATCH_INTERVAL_S = 1.0


def _die_with_parent(parent_pid: int, use_pdeathsig: bool) -> None:
    """Ask Linux to SIGKILL us when the parent dies; then check it has not died already."""
    if use_pdeathsig and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the stdin/ppid watch below still covers us
    # The parent may have died between fork and prctl: then nothing would ever signal us.
    if os.getppid() != parent_pid:
        os._exit(3)


def _build_server(cfg: dict[str, Any]) -> Any:
    """Create (and so start) the llama.cpp server described by `cfg`."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = cfg["gguf"]
    params.model_alias = {cfg["alias"]}
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # llama.cpp binds a free port; we read it back from listening_address
    params.n_parallel = cfg["parallel"]
    params.n_ctx = cfg["ctx_size"]  # total; llama.cpp splits it evenly across the slots
    params.cont_batching = True
    params.endpoint_metrics = True  # /metrics with llamacpp:requests_processing / _deferred
    # More HTTP workers than slots, so /health and /metrics answer while every slot is busy
    # and queued requests show up as llamacpp:requests_deferred instead of stalling accept().
    params.n_threads_http = cfg["http_threads"]
    if cfg["threads"] > 0:
        params.cpuparams.n_threads = cfg["threads"]
        params.cpuparams_batch.n_threads = cfg["threads"]
    # 2 = warnings and errors: info level logs several lines per request, which adds up over days.
    params.verbosity = cfg["verbosity"]
    return xllamacpp.Server(params)


def _wait_for_parent(parent_pid: int) -> None:
    """Block until stdin hits EOF or we are orphaned."""
    stdin = sys.stdin.buffer.fileno()
    while os.getppid() == parent_pid:
        ready, _, _ = select.select([stdin], [], [], _WATCH_INTERVAL_S)
        if ready and not os.read(stdin, 4096):
            return


def main(argv: list[str]) -> int:
    """Start the server, report its address, serve until the parent goes away."""
    cfg = json.loads(argv[1])
    ready_fd = int(argv[2])
    parent_pid = int(cfg["parent_pid"])
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid, bool(cfg["pdeathsig"]))
    try:
        server = _build_server(cfg)
    except Exception as exc:  # noqa: BLE001 - report any failure to the parent via the log
        print(f"embedded LLM: failed to start llama.cpp server: {exc}", file=sys.stderr)
        return 2
    with os.fdopen(ready_fd, "w") as ready:
        ready.write(json.dumps({"base_url": server.listening_address, "pid": os.getpid()}) + "\n")
    _wait_for_parent(parent_pid)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the server's destructor: it waits for in-flight requests, and the kernel frees all.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
