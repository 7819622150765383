"""The daemon's commands for the `persona` CLI: serve, submit, jobs, status, pause, resume, cancel.

`engine/cli.py` calls `add_commands(subparsers)` and adds the returned handlers to its table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from engine.scheduler.progress import fmt_duration

Command = Callable[[argparse.Namespace], int]


def _url_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="the daemon (default: $PERSONA_URL, else http://127.0.0.1:8765); "
                                 "the bearer token comes from $PERSONA_TOKEN")


def add_commands(sub: argparse._SubParsersAction) -> dict[str, Command]:  # type: ignore[type-arg]
    """Register the daemon's subcommands on `sub`; returns {command name: handler}."""
    s = sub.add_parser("serve", help="run the daemon: a job API, /metrics and /healthz",
                       description="Run the daemon: jobs submitted to it run as `persona run` processes that it "
                                   "supervises; SIGTERM checkpoints them all, and a restart resumes them.")
    s.add_argument("-c", "--config", type=Path, help="daemon config with a [service] table (see deploy/)")
    s.add_argument("--host", help="address to bind (default 127.0.0.1; any other needs $PERSONA_TOKEN)")
    s.add_argument("--port", type=int, help="port (default 8765; 0 = a free one, written to STATE_DIR/daemon.json)")
    s.add_argument("--state-dir", type=Path, help="where job state lives (default ~/.local/state/persona-engine)")

    p = sub.add_parser("submit", help="submit a job to the daemon")
    p.add_argument("config", type=Path, metavar="CONFIG", help="the job's config.toml (keys by env var name only)")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="input files (default: the config's run.inputs)")
    p.add_argument("-o", "--output", help="output directory (default: one in the daemon's state dir)")
    p.add_argument("--weight", type=float, default=1.0, help="share of each endpoint against other jobs (default 1)")
    p.add_argument("--name", default="", help="a label for the job")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    _url_arg(p)

    j = sub.add_parser("jobs", help="list the daemon's jobs")
    j.add_argument("--json", action="store_true", help="print JSON")
    _url_arg(j)

    st = sub.add_parser("status", help="a job's progress line (every active job's without JOB)")
    st.add_argument("job", nargs="?", metavar="JOB")
    st.add_argument("--json", action="store_true", help="print JSON")
    _url_arg(st)

    for action, text in (("pause", "pause a job (it checkpoints and stops)"),
                         ("resume", "resume a paused or failed job from its checkpoint"),
                         ("cancel", "cancel a job (what it wrote so far is kept)")):
        a = sub.add_parser(action, help=text)
        a.add_argument("job", metavar="JOB")
        _url_arg(a)
    return {"serve": cmd_serve, "submit": cmd_submit, "jobs": cmd_jobs, "status": cmd_status,
            "pause": cmd_action, "resume": cmd_action, "cancel": cmd_action}


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from engine.service.client import Client

    return Client(args.url)


def _guarded(fn: Command) -> Command:
    """Print a daemon error as `error: …` and exit 1."""

    def run(args: argparse.Namespace) -> int:
        from engine.service.client import ServiceError

        try:
            return fn(args)
        except ServiceError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1

    run.__doc__ = fn.__doc__
    return run


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.errors import ConfigError
    from engine.service import daemon, settings

    try:
        cfg = settings.load(args.config, host=args.host, port=args.port, state_dir=args.state_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return daemon.serve(cfg)


@_guarded
def cmd_submit(args: argparse.Namespace) -> int:
    from engine.service.api import SubmitRequest

    try:
        text = args.config.read_text(encoding="utf-8")
    except OSError as e:
        print(f"error: cannot read {args.config}: {e.strerror}", file=sys.stderr)
        return 1
    client = _client(args)
    local = urlsplit(client.url).hostname in ("127.0.0.1", "::1", "localhost")
    # local paths are sent absolute, so the daemon reads what this shell means by them
    inputs = [str(Path(i).resolve()) if Path(i).exists() else i for i in args.inputs]
    output = str(Path(args.output).resolve()) if args.output and local else args.output
    base = str(args.config.resolve().parent) if local else None
    job = client.submit(SubmitRequest(config=text, inputs=inputs, output=output, weight=args.weight,
                                      name=args.name, base_dir=base))
    if args.json:
        print(msgspec.json.encode(job).decode())
        return 0
    print(f"submitted job {job.id} ({job.state}), output {job.output}")
    if job.scrubbed:
        print(f"warning: removed secret-looking config values: {', '.join(job.scrubbed)}; "
              "name environment variables instead (endpoints.NAME.api_key_env)", file=sys.stderr)
    print(f"follow it with: persona status {job.id}")
    return 0


def _age(ts: float | None) -> str:
    return fmt_duration(time.time() - ts) if ts else "-"


@_guarded
def cmd_jobs(args: argparse.Namespace) -> int:
    jobs = _client(args).jobs()
    if args.json:
        print(msgspec.json.encode(jobs).decode())
        return 0
    if not jobs:
        print("no jobs")
        return 0
    rows = [("JOB", "STATE", "WEIGHT", "INPUTS", "PERSONAS", "REQ/S", "ETA", "AGE", "NAME")]
    for j in jobs:
        total = f"/{j.inputs_total}" if j.inputs_total else ""
        rows.append((j.id, j.state, f"{j.weight:g}", f"{j.inputs_done}{total}", str(j.gate.accepted),
                     f"{j.rates.requests:.1f}", fmt_duration(j.eta_s) if j.eta_s is not None else "-",
                     _age(j.created_at), j.name))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


@_guarded
def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.job is None:
        jobs = [j for j in client.jobs() if j.state in ("queued", "running", "pausing", "cancelling")]
        if args.json:
            print(msgspec.json.encode(jobs).decode())
        elif not jobs:
            print("no active jobs (see `persona jobs`)")
        for j in jobs if not args.json else ():
            print(f"{j.id} {j.state:9} {j.progress_line or '(starting)'}")
        return 0
    j = client.job(args.job)
    if args.json:
        print(msgspec.json.encode(j).decode())
        return 0
    print(f"{j.id} {j.state}" + (f" (exit {j.exit_code})" if j.exit_code not in (None, 0) else ""))
    if j.progress_line:
        print(j.progress_line)
    if j.concurrency:
        print("concurrency " + ", ".join(f"{k} {v}" for k, v in sorted(j.concurrency.items())))
    if j.checkpoint_age_s is not None and j.state in ("running", "pausing"):
        print(f"checkpoint  {fmt_duration(j.checkpoint_age_s)} ago")
    print(f"output      {j.output}")
    if j.error:
        print(f"error       {j.error}")
    return 0


@_guarded
def cmd_action(args: argparse.Namespace) -> int:
    j = _client(args).action(args.job, args.command)
    print(f"job {j.id}: {j.state}")
    return 0
