"""The daemon's own config: a `[service]` table, plus optional `[endpoints.NAME]` capacities.

    [service]
    host = "127.0.0.1"        # any other address needs the token env var set
    port = 8765
    state_dir = "/var/lib/persona"
    roots = ["/data"]         # paths given through the API must lie under these (default: state_dir)
    token_env = "PERSONA_TOKEN"

    [endpoints.vllm]          # what a server can take; jobs that use its base_url share it
    base_url = "http://127.0.0.1:8000/v1"
    max_in_flight = 64
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec

from engine.config import Endpoint, translate
from engine.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
PosInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PosFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
DEFAULT_PORT = 8765


class ServiceSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How the daemon listens, where it keeps state, and how it treats its job children."""

    host: str = "127.0.0.1"
    port: Port = DEFAULT_PORT  # 0 = a free port (written to STATE_DIR/daemon.json)
    state_dir: str = ""  # "" = $XDG_STATE_HOME/persona-engine (~/.local/state/persona-engine)
    roots: list[str] = []  # [] = [state_dir]
    token_env: str = "PERSONA_TOKEN"  # NAME of the env var holding the bearer token
    max_running: PosInt = 4  # jobs running at once; the rest wait in FIFO order
    stop_timeout: PosFloat = 120.0  # seconds a child gets to checkpoint on pause/shutdown before SIGKILL
    poll_interval: PosFloat = 0.5  # how often children are reaped and their status read
    max_restarts: NonNegInt = 3  # crash re-launches in a row before a job is marked failed
    grow_after: NonNegFloat = 30.0  # a child's share may grow (by a restart) only after it ran this long
    keep_finished_metrics: NonNegFloat = 3600.0  # seconds a finished job stays in /metrics
    python: str = ""  # interpreter for job children ("" = the daemon's own)


class DaemonConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole daemon config file."""

    service: ServiceSettings = ServiceSettings()
    endpoints: dict[str, Endpoint] = {}


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "persona-engine"


def load(path: Path | None, **cli: Any) -> DaemonConfig:
    """Read the daemon config (or defaults) and apply CLI values (None = keep)."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("config", f"file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("config", f"not valid TOML: {e}", source) from None
    svc = data.setdefault("service", {})
    for key, value in cli.items():
        if value is not None:
            svc[key] = str(value) if isinstance(value, Path) else value
    try:
        cfg = msgspec.convert(data, DaemonConfig, strict=True)
    except msgspec.ValidationError as e:
        raise translate(e, source) from None
    s = cfg.service
    base = path.resolve().parent if path is not None else Path.cwd()
    state = Path(s.state_dir).expanduser() if s.state_dir else default_state_dir()
    state = (base / state).resolve()
    roots = [str((base / Path(r).expanduser()).resolve()) for r in s.roots] or [str(state)]
    return msgspec.structs.replace(cfg, service=msgspec.structs.replace(s, state_dir=str(state), roots=roots))


def server_key(base_url: str) -> str:
    """One name per server: the base URL without a trailing slash or /v1."""
    url = base_url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url
