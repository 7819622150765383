"""Soak: the daemon against a fake endpoint with random faults, for N requests (default 200,000).

Runs `persona serve` (a real daemon process) with J jobs that share one fake endpoint which
injects faults into ~10 % of requests (429 with Retry-After, 500, 503, connection resets, slow
replies, truncated and malformed bodies), then the same workload without faults. It reports:

* nothing lost or duplicated: every output decompresses, no record id twice, every input's
  id is the source_id of exactly one persona / rejection / dead letter;
* memory: RSS of the daemon and of each job process, median over the window right after
  warm-up against the median over the last 10 % of the run (flat = within 10 %);
* throughput with faults against the fault-free run.

The fake replies with a bounded set of personas, so the gate's indexes (which grow with
accepted personas, by design) stop growing early and RSS measures leaks, not data.

    python bench/soak.py [--requests 200000] [--jobs 2] [--fault-rate 0.1] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.service.harness import DaemonProcess, rss_bytes, verify_outputs
from engine.testing.fake_openai import run_in_thread

KINDS = "429,500,503,reset,slow,truncated,malformed"
JOBS = ("nurse", "welder", "violinist", "beekeeper", "actuary", "glassblower", "midwife", "surveyor",
        "cartographer", "sommelier", "locksmith", "paramedic", "archivist", "falconer", "stonemason",
        "chef", "pilot", "botanist", "tailor", "ferrier")


def _reply(body: dict[str, Any]) -> str:
    prompt = body["messages"][-1]["content"]
    at = prompt.find("item-")
    i = int(prompt[at + 5:at + 13]) % 2000 if at >= 0 else 0  # 2,000 distinct personas at most
    return json.dumps({"persona": f"A {JOBS[i % 20]} who keeps notes on subject {i // 20} and shares them."})


@dataclass
class Phase:
    name: str
    fault_rate: float
    inputs: int = 0
    requests: int = 0  # as the endpoint counted them
    faults: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    req_per_s: float = 0.0
    inputs_per_s: float = 0.0
    retries: int = 0
    rate_limited: int = 0
    dead: int = 0
    personas: int = 0
    rejected: int = 0
    lost: int = 0
    duplicated: int = 0
    verified: bool = False
    verify_error: str = ""
    launches: dict[str, int] = field(default_factory=dict)
    rss_mb: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # start, end, growth %
    rss_flat: bool = True
    samples: list[dict[str, Any]] = field(default_factory=list)


def _write_inputs(path: Path, n: int, prefix: str, start: int) -> set[str]:
    ids = set()
    with path.open("w") as fh:
        for i in range(n):
            rid = f"{prefix}-{i:07d}"
            ids.add(rid)
            fh.write(json.dumps({"id": rid, "text": f"item-{start + i:08d} a text about things, number {i}"}) + "\n")
    return ids


def _config(base_url: str, args: argparse.Namespace) -> str:
    return f"""
[run]
checkpoint_interval = {args.checkpoint_interval}
log_interval = 10.0

[endpoints.fake]
base_url = "{base_url}/v1"
model = "m"
max_in_flight = {args.concurrency}
backoff_base = 0.05
backoff_max = 2.0
max_retries = 8

[text_to_persona]
endpoint = "fake"

[expansion]
enabled = false

[synthesis]
enabled = false

[gate.semantic]
enabled = false
"""


def _rss_window(series: list[tuple[float, int]], warm: float) -> tuple[float, float, float]:
    """(start MB, end MB, growth %): medians of the first 10 % after warm-up and of the last 10 %."""
    after = [r for p, r in series if p >= warm and r > 0]
    if len(after) < 4:
        return 0.0, 0.0, 0.0
    k = max(2, len(after) // 10)
    start, end = statistics.median(after[:k]), statistics.median(after[-k:])
    return start / 2**20, end / 2**20, 100.0 * (end - start) / start


def run_phase(name: str, fault_rate: float, args: argparse.Namespace, work: Path) -> Phase:
    ph = Phase(name, fault_rate)
    root = work / name
    root.mkdir(parents=True)
    per_job = max(1, args.requests // args.jobs)
    expected = {f"j{k}": _write_inputs(root / f"j{k}.jsonl", per_job, f"j{k}", k * per_job)
                for k in range(args.jobs)}
    ph.inputs = per_job * args.jobs
    (root / "daemon.toml").write_text(f'[service]\nroots = ["{root}"]\ngrow_after = 30.0\n')
    kinds = [k for k in args.fault_kinds.split(",") if k]
    with run_in_thread(reply=_reply, fault_rate=fault_rate, fault_kinds=kinds, slow_delay=args.slow_delay,
                       latency=args.latency, seed=args.seed) as fake:
        d = DaemonProcess(root / "state", config=root / "daemon.toml", log=root / "daemon.log").start()
        try:
            t0 = time.monotonic()
            ids = {}
            for k in range(args.jobs):
                status, job = d.call("POST", "/v1/jobs", {"config": _config(fake.base_url, args),
                                                          "inputs": [f"j{k}.jsonl"], "output": f"out-j{k}",
                                                          "name": f"soak-{name}-{k}"})
                if status != 201:
                    raise SystemExit(f"submit failed: {status} {job}")
                ids[f"j{k}"] = job["id"]
            series: dict[str, list[tuple[float, int]]] = {"daemon": []}
            next_print = t0
            while True:
                views = {k: d.job(i) for k, i in ids.items()}
                done = sum(v["inputs_done"] for v in views.values())
                progress = done / ph.inputs
                series["daemon"].append((progress, rss_bytes(d.pid)))
                sample: dict[str, Any] = {"t": round(time.monotonic() - t0, 1), "progress": round(progress, 4),
                                          "requests": fake.stats.requests, "rss_daemon": rss_bytes(d.pid)}
                for k, i in ids.items():
                    pid = json.loads((root / "state" / "jobs" / i / "job.json").read_text()).get("pid")
                    r = rss_bytes(pid) if pid else 0
                    # steady state only: not once the job's inputs are done (its final checkpoint and summary)
                    if views[k]["state"] == "running" and views[k]["inputs_done"] < per_job:
                        series.setdefault(k, []).append((progress, r))
                    sample[f"rss_{k}"] = r
                ph.samples.append(sample)
                if any(v["state"] in ("failed", "cancelled", "paused") for v in views.values()):
                    raise SystemExit(f"a job stopped: {[(v['id'], v['state'], v['error']) for v in views.values()]}")
                if all(v["state"] == "finished" for v in views.values()):
                    break
                if time.monotonic() >= next_print:
                    rate = fake.stats.requests / max(1e-9, time.monotonic() - t0)
                    print(f"  {name}: {100 * progress:5.1f}% inputs, {fake.stats.requests} requests, "
                          f"{rate:.0f} req/s, daemon RSS {rss_bytes(d.pid) / 2**20:.0f} MB", file=sys.stderr)
                    next_print += args.print_every
                time.sleep(args.sample_interval)
            ph.wall_s = time.monotonic() - t0
        finally:
            d.stop()
        ph.requests = fake.stats.requests
        ph.faults = dict(fake.stats.faults)
    for k, i in ids.items():
        v = json.loads((root / "state" / "jobs" / i / "job.json").read_text())
        ph.launches[k] = v["launches"]
        st = json.loads((root / f"out-{k}" / "checkpoint" / "status.json").read_text())["counters"]
        ph.retries += st.get("retries", 0)
        ph.rate_limited += st.get("rate_limited", 0)
    ph.req_per_s = ph.requests / ph.wall_s
    ph.inputs_per_s = ph.inputs / ph.wall_s
    ph.verified = True
    for k in ids:
        try:
            counts = verify_outputs(root / f"out-{k}", expected[k])
        except AssertionError as e:
            ph.verified, ph.verify_error = False, f"{k}: {e}"
            continue
        ph.personas += counts["personas"]
        ph.rejected += counts["rejected"]
        ph.dead += counts["dead_letter"]
    if not ph.verified:
        ph.lost = ph.duplicated = -1  # see verify_error
    for who, s in series.items():
        ph.rss_mb[who] = _rss_window(s, args.warmup)
    ph.rss_flat = all(abs(g) <= 10.0 for _, _, g in ph.rss_mb.values())
    return ph


def _table(phases: list[Phase]) -> str:
    rows = [("phase", "inputs", "requests", "faults", "429s", "retries", "dead", "wall", "req/s", "inputs/s",
             "lost/dup", "RSS start→end MB (growth)")]
    for p in phases:
        rss = "; ".join(f"{w} {a:.0f}→{b:.0f} ({g:+.1f}%)" for w, (a, b, g) in p.rss_mb.items())
        rows.append((p.name, str(p.inputs), str(p.requests), str(sum(p.faults.values())), str(p.rate_limited),
                     str(p.retries), str(p.dead), f"{p.wall_s:.0f}s", f"{p.req_per_s:.0f}", f"{p.inputs_per_s:.0f}",
                     "0/0" if p.verified else "FAILED", rss))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200_000, help="inputs in all (each is at least one request)")
    ap.add_argument("--jobs", type=int, default=2, help="jobs sharing the endpoint")
    ap.add_argument("--concurrency", type=int, default=64, help="the endpoint's max_in_flight (shared by the jobs)")
    ap.add_argument("--fault-rate", type=float, default=0.10)
    ap.add_argument("--fault-kinds", default=KINDS, help=f"comma-separated (default {KINDS})")
    ap.add_argument("--slow-delay", type=float, default=0.5, help="seconds a 'slow' fault waits")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds per reply")
    ap.add_argument("--checkpoint-interval", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=0.2, help="share of inputs before RSS is compared")
    ap.add_argument("--sample-interval", type=float, default=1.0)
    ap.add_argument("--print-every", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-baseline", action="store_true", help="skip the fault-free run")
    ap.add_argument("--keep", type=Path, help="keep the work dir here (default: a temp dir, removed)")
    ap.add_argument("--json", type=Path, help="write the figures (and RSS samples) here")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="persona-soak-") as tmp:
        work = args.keep or Path(tmp)
        phases = [run_phase("faults" if args.fault_rate > 0 else "no-faults", args.fault_rate, args, work)]
        if not args.no_baseline and args.fault_rate > 0:
            phases.append(run_phase("no-faults", 0.0, args, work))
    print(_table(phases))
    f = phases[0]
    ok = all(p.verified for p in phases)
    print(f"\nnothing lost or duplicated: {'yes' if ok else 'NO: ' + '; '.join(p.verify_error for p in phases)}")
    print(f"RSS flat within 10% after {args.warmup:.0%} warm-up: {'yes' if all(p.rss_flat for p in phases) else 'NO'}")
    print(f"faults injected: {f.faults} ({sum(f.faults.values()) / max(1, f.requests):.1%} of requests)")
    print(f"job process launches: {f.launches}")
    if len(phases) > 1:
        print(f"throughput with faults: {f.req_per_s / phases[1].req_per_s:.1%} of fault-free req/s, "
              f"{f.inputs_per_s / phases[1].inputs_per_s:.1%} of fault-free inputs/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "phases": [asdict(p) for p in phases]}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
