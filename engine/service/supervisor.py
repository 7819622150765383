"""The supervisor: one `python -m engine run` child per running job; launch, pause, resume, cancel.

Pause sends SIGINT (the child checkpoints and exits 130); resume re-launches the same
command, which resumes from the output dir's checkpoint; cancel sends SIGTERM. A child
that outlives `stop_timeout` is SIGKILLed (its periodic checkpoint still resumes exactly).
All decisions run in `step()`, one synchronous pass over the jobs, called every
`poll_interval` and right after each API action.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import ENV_KEYS
from engine.service import status, tomlw
from engine.service.jobs import Job, JobStore
from engine.service.secrets import env_values, redact
from engine.service.settings import DaemonConfig, server_key
from engine.service.share import Allot, Demand, Use, allot, needs_restart
from engine.service.submit import uses

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger("persona.service")
TERMINAL = ("finished", "failed", "cancelled")
LOG_ROTATE_BYTES = 20 << 20
# A child signalled before `persona run` installs its handlers dies with a KeyboardInterrupt traceback
# (exit 1); so SIGINT waits until the child writes its first status.json, or this many seconds.
READY_GRACE_S = 15.0
_RANK = {"": 0, "restart": 1, "shutdown": 1, "pause": 2, "cancel": 3}


class Conflict(Exception):
    """Raised when an action does not apply to a job in its present state."""


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    started: float  # monotonic
    allot: dict[str, Allot]
    inputs_at_start: int
    launched_wall: float = 0.0  # time.time() at launch, to tell this child's status.json from older ones
    intent: str = ""  # "" | pause | cancel | restart | shutdown
    pending: int | None = None  # a SIGINT held back until the child is ready for it
    deadline: float | None = None  # SIGKILL after this (monotonic)


@dataclass
class Supervisor:
    cfg: DaemonConfig
    store: JobStore
    jobs: dict[str, Job] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)
    trackers: dict[str, status.Tracker] = field(default_factory=dict)
    stopping: bool = False

    def __post_init__(self) -> None:
        s = self.cfg.service
        self.python = s.python or sys.executable
        self.capacity = {server_key(ep.base_url): Use(server_key(ep.base_url), ep.max_in_flight,
                                                      ep.requests_per_minute, ep.tokens_per_minute)
                         for ep in self.cfg.endpoints.values() if ep.base_url != "embedded"}
        drop = {*ENV_KEYS, "PERSONA_SET", s.token_env}  # the daemon's settings are not the jobs'
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.env["PYTHONUNBUFFERED"] = "1"
        self._uses: dict[str, dict[str, Use]] = {}
        self._not_before: dict[str, float] = {}
        self._kick: asyncio.Event | None = None

    # ---- start-up -----------------------------------------------------------------------
    def recover(self) -> None:
        """Load every job; kill children a dead daemon left behind; queue what was unfinished."""
        self.jobs = self.store.load_all()
        for job in self.jobs.values():
            if job.pid:
                _kill_orphan(job.pid, str(self.store.dir(job.id) / "run.toml"))
                job.pid = None
            if job.state in ("running", "queued"):
                job.state = "queued"
            elif job.state == "pausing":
                job.state = "paused"
            elif job.state == "cancelling":
                job.state, job.finished_at = "cancelled", time.time()
            self.store.save(job)
            self._sample(job)
        log.info("recovered jobs", extra={"fields": {"jobs": len(self.jobs), "queued": self.count("queued")}})

    # ---- API actions --------------------------------------------------------------------
    def add(self, job: Job) -> None:
        self.jobs[job.id] = job
        self.store.save(job)
        self.trackers[job.id] = status.Tracker()
        log.info("job submitted", extra={"fields": {"job": job.id, "weight": job.weight}})
        self.kick()

    def pause(self, job: Job) -> None:
        if job.state == "queued":
            self._set(job, "paused")
        elif job.state == "running":
            self._signal(job, "pause", signal.SIGINT)
            self._set(job, "pausing")
        elif job.state not in ("paused", "pausing"):
            raise Conflict(f"job {job.id} is {job.state}; only a queued or running job can be paused")

    def resume(self, job: Job) -> None:
        if job.state in ("paused", "failed"):
            job.crashes, job.error, job.exit_code, job.finished_at = 0, "", None, None
            self._set(job, "queued")
        elif job.state == "pausing":
            child = self.children[job.id]
            if child.pending is not None:  # the SIGINT was not sent yet: just keep running
                child.intent, child.pending, child.deadline = "", None, None
            else:
                child.intent = "restart"  # let the checkpoint finish, then go on at once
            self._set(job, "running")
        elif job.state not in ("queued", "running"):
            raise Conflict(f"job {job.id} is {job.state}; only a paused or failed job can be resumed")

    def cancel(self, job: Job) -> None:
        if job.state in ("queued", "paused", "failed"):
            job.finished_at = time.time()
            self._set(job, "cancelled")
        elif job.state in ("running", "pausing"):
            self._signal(job, "cancel", signal.SIGTERM)
            self._set(job, "cancelling")
        elif job.state == "finished":
            raise Conflict(f"job {job.id} has finished; there is nothing to cancel")

    # ---- the loop -----------------------------------------------------------------------
    def kick(self) -> None:
        if self._kick is not None:
            self._kick.set()

    async def run(self) -> None:
        """Step every poll interval (sooner when kicked) until stopped and every child is gone."""
        self._kick = asyncio.Event()
        while not (self.stopping and not self.children):
            self.step()
            try:
                await asyncio.wait_for(self._kick.wait(), self.cfg.service.poll_interval)
            except asyncio.TimeoutError:
                pass
            self._kick.clear()

    def shutdown(self) -> None:
        """Graceful stop: every child checkpoints and exits; their jobs stay queued for the next start."""
        self.stopping = True
        for job_id in list(self.children):
            self._signal(self.jobs[job_id], "shutdown", signal.SIGINT)
        self.kick()

    def step(self) -> None:
        now = time.monotonic()
        for job_id, child in list(self.children.items()):
            rc = child.proc.poll()
            if rc is None:
                if child.deadline is not None and now > child.deadline:
                    _killpg(child.proc.pid)
                    child.deadline = None
                continue
            self._exited(self.jobs[job_id], child, rc)
        if not self.stopping:
            self._launch_queued(now)
            self._rebalance(now)
        for job_id, child in self.children.items():
            self._sample(self.jobs[job_id])
            if child.pending is not None and self._ready(job_id, child, now):
                _send(child, child.pending)
                child.pending = None

    # ---- internals ----------------------------------------------------------------------
    def _set(self, job: Job, state: str) -> None:
        old, job.state = job.state, state  # type: ignore[assignment]
        self.store.save(job)
        if old != state:
            log.info("job state", extra={"fields": {"job": job.id, "from": old, "to": state}})
        self.kick()

    def _signal(self, job: Job, intent: str, sig: int) -> None:
        child = self.children.get(job.id)
        if child is None:
            return
        if _RANK[intent] >= _RANK[child.intent]:  # a cancel is never downgraded to a pause, nor a pause to a restart
            child.intent = intent
        now = time.monotonic()
        child.deadline = now + self.cfg.service.stop_timeout
        if sig == signal.SIGINT and not self._ready(job.id, child, now):
            child.pending = sig
            return
        child.pending = None
        _send(child, sig)

    def _ready(self, job_id: str, child: Child, now: float) -> bool:
        """Whether the child has its signal handlers in place (it wrote a status.json of its own)."""
        snap = self.trackers[job_id].snap
        fresh = snap.source == "status.json" and snap.updated >= child.launched_wall
        return fresh or now - child.started > READY_GRACE_S

    def _demands(self, extra: Sequence[Job] = ()) -> list[Demand]:
        ids = list(self.children) + [j.id for j in extra]
        return [Demand(i, self.jobs[i].weight, self._job_uses(self.jobs[i])) for i in ids]

    def _job_uses(self, job: Job) -> dict[str, Use]:
        if job.id not in self._uses:
            self._uses[job.id] = uses(self._doc(job), job.id)
        return self._uses[job.id]

    def _doc(self, job: Job) -> dict[str, Any]:
        return tomllib.loads((self.store.dir(job.id) / "config.toml").read_text(encoding="utf-8"))

    def _launch_queued(self, now: float) -> None:
        """Launch queued jobs (oldest first) up to max_running; shares count them all at once."""
        free = self.cfg.service.max_running - len(self.children)
        batch = sorted((j for j in self.jobs.values() if j.state == "queued" and j.id not in self.children
                        and self._not_before.get(j.id, 0.0) <= now), key=lambda j: j.created_at)[:max(0, free)]
        ready = []
        for job in batch:
            try:
                self._job_uses(job)
                ready.append(job)
            except Exception as e:  # noqa: BLE001 - a job whose config cannot be read fails alone
                self._fail_start(job, e)
        if not ready:
            return
        targets = allot(self._demands(extra=ready), self.capacity)
        for job in ready:
            try:
                self._launch(job, targets[job.id])
            except Exception as e:  # noqa: BLE001
                self._fail_start(job, e)

    def _fail_start(self, job: Job, e: Exception) -> None:
        job.error, job.finished_at = f"could not start the job: {e}", time.time()
        self._set(job, "failed")

    def _launch(self, job: Job, share: dict[str, Allot]) -> None:
        d = self.store.dir(job.id)
        doc = self._doc(job)
        for name, a in share.items():
            ep = doc["endpoints"][name]
            ep["max_in_flight"] = a.max_in_flight
            if a.rpm > 0:
                ep["requests_per_minute"] = a.rpm
            if a.tpm > 0:
                ep["tokens_per_minute"] = a.tpm
        tmp = d / "run.toml.tmp"
        tmp.write_text(tomlw.dumps(doc), encoding="utf-8")
        os.replace(tmp, d / "run.toml")
        out = Path(job.output)
        # a child killed between creating its files and its first checkpoint leaves files without a
        # checkpoint, which `persona run` refuses; they are ours (the dir was empty at submit), so reclaim them
        force = job.launches > 0 and job.output_was_empty and not (out / "checkpoint" / "state.json").exists()
        cmd = [self.python, "-m", "engine.service.child", str(os.getpid()), "--",
               self.python, "-m", "engine", "run", "-c", str(d / "run.toml"), "-o", job.output,
               "--progress", "log", *(["--force"] if force else []), "--", *job.inputs]
        logfile = d / "child.log"
        if logfile.exists() and logfile.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(logfile, d / "child.log.1")
        wall = time.time()
        with open(logfile, "ab") as fh:
            fh.write(f"--- launch {job.launches + 1} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            fh.flush()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, cwd=d,
                                    env=self.env, start_new_session=True)
        tracker = self.trackers.setdefault(job.id, status.Tracker())
        tracker.restart()
        self.children[job.id] = Child(proc, time.monotonic(), share, tracker.snap.counters.get("inputs_done", 0),
                                      launched_wall=wall)
        job.pid, job.launches, job.exit_code = proc.pid, job.launches + 1, None
        job.allot = {n: [a.max_in_flight, a.rpm, a.tpm] for n, a in share.items()}
        job.started_at = job.started_at or time.time()
        log.info("job launched", extra={"fields": {"job": job.id, "pid": proc.pid, "launch": job.launches,
                                                   "concurrency": {n: a.max_in_flight for n, a in share.items()}}})
        self._set(job, "running")

    def _rebalance(self, now: float) -> None:
        if not self.children:
            return
        targets = allot(self._demands(), self.capacity)
        for job_id, child in self.children.items():
            if child.intent or self.jobs[job_id].state != "running":
                continue
            if needs_restart(child.allot, targets[job_id], ran_for=now - child.started,
                             grow_after=self.cfg.service.grow_after):
                log.info("job restarts for its new share", extra={"fields": {
                    "job": job_id, "concurrency": {n: a.max_in_flight for n, a in targets[job_id].items()}}})
                self._signal(self.jobs[job_id], "restart", signal.SIGINT)

    def _exited(self, job: Job, child: Child, rc: int) -> None:
        del self.children[job.id]
        self._sample(job)
        job.pid, job.exit_code = None, rc
        intent = child.intent
        if rc == 0:
            state = "finished"
        elif intent == "cancel":
            state = "cancelled"
        elif rc > 0 and rc != 130 and not (intent and self._interrupted(job)):  # the run failed
            job.error = self._error_tail(job)
            state = "failed"
        elif intent == "pause" or (rc == 130 and not intent):
            state = "paused"
        elif intent in ("restart", "shutdown"):
            state = "queued"
        else:  # died of a signal nobody here sent (OOM killer, a stray kill)
            progressed = self.trackers[job.id].snap.counters.get("inputs_done", 0) > child.inputs_at_start
            job.crashes = 1 if progressed else job.crashes + 1
            if job.crashes > self.cfg.service.max_restarts:
                job.error = f"the job's process died of signal {-rc} {job.crashes} times in a row"
                state = "failed"
            else:
                self._not_before[job.id] = time.monotonic() + min(60.0, 2.0 ** job.crashes)
                state = "queued"
            log.warning("job process died", extra={"fields": {"job": job.id, "signal": -rc}})
        if rc in (0, 130):
            job.crashes = 0
        if state in TERMINAL:
            job.finished_at = time.time()
        self._set(job, state)

    def _interrupted(self, job: Job) -> bool:
        """Whether the child died of our SIGINT before its handlers were in place (READY_GRACE_S passed)."""
        return self._error_tail(job).rstrip().endswith("KeyboardInterrupt")

    def _error_tail(self, job: Job) -> str:
        """The child's own error message (the last `error:` line and what follows), secrets redacted."""
        try:
            with open(self.store.dir(job.id) / "child.log", "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - 8192))
                lines = fh.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "the job's process failed (no log)"
        starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
        text = "\n".join(lines[starts[-1]:] if starts else lines[-5:])
        return redact(text, env_values([*job.secret_envs, self.cfg.service.token_env]))[:2000]

    def _sample(self, job: Job) -> None:
        self.trackers.setdefault(job.id, status.Tracker()).update(status.read(Path(job.output)))

    def count(self, state: str) -> int:
        return sum(1 for j in self.jobs.values() if j.state == state)


def _send(child: Child, sig: int) -> None:
    try:
        child.proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # children start their own session: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


def _kill_orphan(pid: int, marker: str) -> None:
    """SIGKILL a job child a dead daemon left behind, if `pid` is still that child."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if marker.encode() not in cmdline:
        return  # the pid now belongs to something else
    log.warning("killing a job process left by the previous daemon", extra={"fields": {"pid": pid}})
    _killpg(pid)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        try:  # reap it if it happens to be ours; otherwise wait for init to
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            pass
        time.sleep(0.05)
