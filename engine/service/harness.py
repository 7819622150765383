"""Run a real daemon process for tests and benchmarks: start on a free port, call, kill, wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgspec

from engine.service.api import ACTIVE

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DaemonProcess:
    """`python -m engine.service serve --port 0` on a state dir; `url` is read from daemon.json."""

    def __init__(self, state_dir: Path, *, config: Path | None = None, env: dict[str, str] | None = None,
                 log: Path | None = None, host: str = "127.0.0.1") -> None:
        self.state_dir = state_dir
        self.config = config
        self.env = {**os.environ, **(env or {})}
        self.log = log or state_dir.parent / f"{state_dir.name}-daemon.log"
        self.host = host
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token: str | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "engine.service", "serve", "--port", "0", "--host", self.host,
               "--state-dir", str(self.state_dir)]
        return cmd + (["-c", str(self.config)] if self.config else [])

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.command(), stdout=fh, stderr=subprocess.STDOUT, env=self.env)
        info_path = self.state_dir / "daemon.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                info = msgspec.json.decode(info_path.read_bytes())
            except (OSError, msgspec.DecodeError):
                info = None
            if info and info.get("pid") == self.proc.pid:  # not a file a killed daemon left
                self.url = info["url"]
                return self
            time.sleep(0.05)
        raise TimeoutError(f"daemon did not start in {timeout}s: {self.log.read_text()[-2000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 180.0) -> int:
        """Signal the daemon and wait for it to exit; returns its exit status."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = None,
             raw: bool = False) -> tuple[int, Any]:
        """(status, decoded JSON or text) of one request; never raises on 4xx/5xx."""
        data = msgspec.json.encode(body) if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        tok = token if token is not None else self.token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        try:
            with _NO_PROXY.open(req, timeout=30) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, payload = e.code, e.read()
        if raw:
            return status, payload.decode()
        try:
            return status, msgspec.json.decode(payload)
        except msgspec.DecodeError:
            return status, payload.decode()

    def job(self, job_id: str) -> dict[str, Any]:
        status, body = self.call("GET", f"/v1/jobs/{job_id}")
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    def wait(self, job_id: str, states: tuple[str, ...], timeout: float = 60.0) -> dict[str, Any]:
        """Poll until the job is in one of `states`; raises with its last view on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            j = self.job(job_id)
            if j["state"] in states:
                return j
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {j['state']} after {timeout}s: {j}")
            time.sleep(0.1)

    def wait_progress(self, job_id: str, inputs_done: int, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            j = self.job(job_id)
            if j["inputs_done"] >= inputs_done or j["state"] not in ACTIVE:
                return j
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} at {j['inputs_done']} inputs after {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)


def verify_outputs(outdir: Path, expected: set[str]) -> dict[str, int]:
    """The crash/resume invariants of a finished run; raises AssertionError naming the first broken one.

    Every output file decompresses (with the `zstd` tool too, where installed); no record id appears
    twice in a file; every expected input id is the `source_id` of exactly one depth-0 persona,
    rejection or dead letter, and no other id is.
    """
    import shutil
    from collections import Counter

    from engine.io.sinks import iter_records

    names = ("personas", "rejected", "dead_letter")
    if shutil.which("zstd"):
        for name in names:
            subprocess.run(["zstd", "-dcq", str(outdir / f"{name}.jsonl.zst")], check=True,
                           stdout=subprocess.DEVNULL)
    fates: Counter[str] = Counter()
    counts = {}
    for name in names:
        ids: Counter[str] = Counter()
        for r in iter_records(outdir / f"{name}.jsonl.zst"):
            ids[r["id"]] += 1
            if name == "dead_letter" or r["depth"] == 0:
                fates[r["source_id"]] += 1
        twice = [i for i, n in ids.items() if n > 1]
        if twice:
            raise AssertionError(f"{name}: {len(twice)} ids appear more than once, e.g. {twice[:3]}")
        counts[name] = sum(ids.values())
    missing, extra = expected - set(fates), set(fates) - expected
    if missing or extra:
        raise AssertionError(f"{len(missing)} inputs have no fate (e.g. {sorted(missing)[:3]}), "
                             f"{len(extra)} unknown source ids (e.g. {sorted(extra)[:3]})")
    repeated = [k for k, n in fates.items() if n > 1]
    if repeated:
        raise AssertionError(f"{len(repeated)} inputs have more than one fate, e.g. {repeated[:3]}")
    return counts


def gone(pid: int) -> bool:
    """True when `pid` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` (0 if it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
