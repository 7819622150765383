"""`persona serve`: check the settings, lock the state dir, recover jobs, serve until SIGTERM.

SIGTERM or SIGINT is a graceful stop: every child checkpoints and exits (SIGKILL after
`stop_timeout`), their jobs stay queued in the state dir, and the next start re-launches
them. After a SIGKILL the kernel kills the children too (see child.py), and the next start
does the same re-launch from their last checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO

import msgspec
from aiohttp import web

from engine.service import logs
from engine.service.jobs import JobStore
from engine.service.paths import PathPolicy
from engine.service.server import Api
from engine.service.settings import DaemonConfig
from engine.service.supervisor import Supervisor

log = logging.getLogger("persona.service")
MIN_TOKEN_CHARS = 16


class StartError(Exception):
    """Raised when the daemon must not start (no token off loopback, state dir in use); says why."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere: treat it as public


def check_token(cfg: DaemonConfig) -> str | None:
    """The bearer token from the environment; required (and long) unless bound to loopback."""
    s = cfg.service
    token = os.environ.get(s.token_env, "")
    if is_loopback(s.host):
        return token or None
    if not token:
        raise StartError(f"refusing to listen on {s.host}: a non-loopback address needs a bearer token; "
                         f"set the environment variable {s.token_env} (the name is [service] token_env)")
    if len(token) < MIN_TOKEN_CHARS:
        raise StartError(f"the token in {s.token_env} is shorter than {MIN_TOKEN_CHARS} characters; "
                         "use a long random one, e.g. `openssl rand -hex 32`")
    return token


def lock_state_dir(state: Path) -> IO[str]:
    """Hold STATE_DIR/daemon.lock for the daemon's life: one daemon per state dir."""
    state.mkdir(parents=True, exist_ok=True)
    fh = open(state / "daemon.lock", "a+")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise StartError(f"another daemon uses the state dir {state}") from None
    return fh


async def _serve(cfg: DaemonConfig, token: str | None) -> None:
    s = cfg.service
    state = Path(s.state_dir)
    sup = Supervisor(cfg, JobStore(state))
    sup.recover()
    api = Api(sup, PathPolicy(s.roots), token)
    runner = web.AppRunner(api.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, s.host, s.port).start()
    except OSError as e:
        await runner.cleanup()
        raise StartError(f"cannot listen on {s.host}:{s.port}: {e.strerror}") from None
    port = runner.addresses[0][1]
    host = f"[{s.host}]" if ":" in s.host else s.host
    info = {"pid": os.getpid(), "host": s.host, "port": port, "url": f"http://{host}:{port}",
            "started": time.time(), "token_required": bool(token)}
    tmp = state / "daemon.json.tmp"
    tmp.write_bytes(msgspec.json.encode(info))
    os.replace(tmp, state / "daemon.json")
    log.info("listening", extra={"fields": {"url": info["url"], "state_dir": str(state), "roots": s.roots,
                                            "token_required": bool(token)}})
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop, sup)
    try:
        await sup.run()
    finally:
        with contextlib.suppress(OSError):
            (state / "daemon.json").unlink()
        await runner.cleanup()
    log.info("stopped", extra={"fields": {"queued_for_restart": sup.count("queued")}})


def _stop(sup: Supervisor) -> None:
    if not sup.stopping:
        log.info("stopping: every job checkpoints; a restart resumes them")
        sup.shutdown()


def serve(cfg: DaemonConfig) -> int:
    """Run the daemon until stopped; returns the exit code."""
    logs.setup()
    try:
        token = check_token(cfg)
        lock = lock_state_dir(Path(cfg.service.state_dir))
    except StartError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(_serve(cfg, token))
        else:
            uvloop.run(_serve(cfg, token))
    except StartError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        lock.close()
    return 0
