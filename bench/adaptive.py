"""Adaptive concurrency vs fixed concurrency against a queueing server (FakeOpenAI --max-concurrency N).

For each capacity N (default 8, 32, 128) the fake server serves N requests at once, each in
--latency seconds, and queues the rest (reporting vllm:num_requests_waiting/running on
/metrics, as vLLM does). Every run sends through the engine's `Router` for --duration
seconds with far more willing senders than slots, counting replies that arrive in that
window (ramp-up included), and reports req/s and latency p50/p99 for

  fixed c     a fixed in-flight limit, swept over N/4 .. 2N and 256 (the best of these is the target)
  adaptive    the adaptive limiter steering on the server's queue metrics
  adaptive-l  the adaptive limiter on latency alone (metrics scraping off)

then adaptive's throughput against the best fixed one (target >= 95%) and its p99 latency
against a fixed guess of 256. The server runs in its own process, restarted for each run
(abandoned requests would otherwise still sit in its queue).

    .venv/bin/python bench/adaptive.py [--capacities 8,32,128] [--latency 0.2] [--duration 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.client.http import EndpointClient  # noqa: E402
from engine.client.probe import MetricsProbe  # noqa: E402
from engine.client.protocol import ChatRequest, Message  # noqa: E402
from engine.errors import EndpointError  # noqa: E402
from engine.scheduler.adaptive import AdaptiveController, AdaptiveSettings  # noqa: E402
from engine.scheduler.budget import Budget  # noqa: E402
from engine.scheduler.router import Member, Router  # noqa: E402

SENDERS = 1024  # willing senders: the limit, not the caller, decides what is in flight


@contextmanager
def fake_server(capacity: int, latency: float) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "engine.testing.fake_openai", "--port", "0",
                             "--max-concurrency", str(capacity), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"fake server did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def one_run(url: str, *, fixed: int | None, metrics: bool, duration: float) -> dict[str, Any]:
    adaptive = None if fixed else AdaptiveController(AdaptiveSettings(), now=time.monotonic())
    probe = MetricsProbe(url + "/metrics") if adaptive is not None and metrics else None
    member = Member("fake", EndpointClient("fake", url, max_connections=SENDERS, request_timeout=600),
                    Budget(max_in_flight=fixed or 512), adaptive=adaptive, probe=probe)
    router = Router("bench", [member], scrape_interval=0.25)
    req = ChatRequest(model="m", messages=[Message(role="user", content="hello")], max_tokens=16)
    latencies: list[float] = []
    done_at: list[float] = []
    limits: list[tuple[float, int, float | None]] = []
    errors = 0
    t0 = time.monotonic()
    end = t0 + duration

    async def sender() -> None:
        nonlocal errors
        while True:
            lease = await router.acquire(32)
            sent = time.monotonic()
            try:
                reply = await lease.call(lease.client.complete, req)
            except EndpointError as e:
                lease.failed(e)
                errors += 1
                continue
            lease.ok(reply, 16)
            done = time.monotonic()
            if done <= end:
                latencies.append(done - sent)
                done_at.append(done - t0)

    async def watch() -> None:
        while True:
            st = adaptive.statistics() if adaptive is not None else None
            limits.append((time.monotonic() - t0, member.budget.max_in_flight, st.waiting if st else None))
            await anyio.sleep(0.1)

    await router.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(router.run)
            tg.start_soon(watch)
            for _ in range(SENDERS):
                tg.start_soon(sender)
            await anyio.sleep(duration)
            tg.cancel_scope.cancel()
    finally:
        await router.close()
    late = [(lim, w) for t, lim, w in limits if t > duration / 2]
    waits = [w for _, w in late if w is not None]
    a = np.asarray(latencies) * 1000 if latencies else np.asarray([float("nan")])
    late_lat = [x for x, t in zip(latencies, done_at, strict=True) if t > duration / 2]
    b = np.asarray(late_lat) * 1000 if late_lat else np.asarray([float("nan")])
    return {"fixed": fixed, "adaptive": adaptive is not None, "metrics": metrics, "completed": len(latencies),
            "errors": errors, "req_per_s": len(latencies) / duration,
            "req_per_s_late": sum(1 for t in done_at if t > duration / 2) / (duration / 2),
            "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)), "p99_ms_late": float(np.percentile(b, 99)),
            "mean_limit_late": float(np.mean([lim for lim, _ in late])) if late else None,
            "mean_waiting_late": float(np.mean(waits)) if waits else None,
            "timeline": [(round(t, 1), lim, w) for t, lim, w in limits[::5]],  # every 0.5 s
            "completions_per_s": _per_second(done_at, duration)}


def _per_second(times: list[float], duration: float) -> list[int]:
    counts = [0] * int(duration + 1)
    for t in times:
        counts[min(int(t), len(counts) - 1)] += 1
    return counts


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        import uvloop

        loop_run: Any = uvloop.run
    except ImportError:
        loop_run = asyncio.run
    out: dict[str, Any] = {"latency_s": args.latency, "duration_s": args.duration, "capacities": {}}
    for n in args.capacities:
        fixed = sorted({max(1, n // 4), max(1, n // 2), max(1, 3 * n // 4), n, 5 * n // 4, 3 * n // 2, 2 * n, 256})
        plan: list[tuple[str, int | None, bool]] = [(f"fixed {c}", c, False) for c in fixed]
        plan += [("adaptive", None, True), ("adaptive-l", None, False)]
        rows = []
        print(f"\ncapacity N={n}: service {args.latency * 1000:.0f} ms, ideal {n / args.latency:.1f} req/s")
        print(f"{'run':>12} {'req/s':>8} {'% ideal':>8} {'2nd half':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99 2nd':>8} "
              f"{'limit':>7} {'waiting':>8}")
        for label, c, metrics in plan:
            with fake_server(n, args.latency) as url:
                r = loop_run(one_run(url, fixed=c, metrics=metrics, duration=args.duration))
            r["label"] = label
            rows.append(r)
            lim = "-" if r["mean_limit_late"] is None or c else f"{r['mean_limit_late']:.1f}"
            wait = "-" if r["mean_waiting_late"] is None else f"{r['mean_waiting_late']:.1f}"
            print(f"{label:>12} {r['req_per_s']:>8.1f} {100 * r['req_per_s'] * args.latency / n:>7.1f}% "
                  f"{r['req_per_s_late']:>9.1f} {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f} {r['p99_ms_late']:>8.0f} "
                  f"{lim:>7} {wait:>8}", flush=True)
        best = max((r for r in rows if r["fixed"]), key=lambda r: r["req_per_s"])
        best_late = max((r for r in rows if r["fixed"]), key=lambda r: r["req_per_s_late"])
        f256 = next(r for r in rows if r["fixed"] == 256)
        summary = {}
        for r in rows:
            if r["adaptive"]:
                summary[r["label"]] = {"vs_best_fixed": r["req_per_s"] / best["req_per_s"],
                                       "best_fixed": best["fixed"],
                                       "vs_best_fixed_late": r["req_per_s_late"] / best_late["req_per_s_late"],
                                       "best_fixed_late": best_late["fixed"], "p99_ms": r["p99_ms"],
                                       "p99_fixed_256_ms": f256["p99_ms"], "p99_ms_late": r["p99_ms_late"],
                                       "p99_fixed_256_ms_late": f256["p99_ms_late"],
                                       "throughput_vs_fixed_256": r["req_per_s"] / f256["req_per_s"]}
                sm = summary[r["label"]]
                print(f"{r['label']}: {100 * sm['vs_best_fixed']:.1f}% of the best fixed over the whole run "
                      f"(c={best['fixed']}, {best['req_per_s']:.1f} req/s), {100 * sm['vs_best_fixed_late']:.1f}% "
                      f"over the second half (c={best_late['fixed']}); p99 {r['p99_ms']:.0f} ms vs "
                      f"{f256['p99_ms']:.0f} ms at fixed 256 (second half: {r['p99_ms_late']:.0f} vs "
                      f"{f256['p99_ms_late']:.0f} ms)")
        out["capacities"][str(n)] = {"runs": rows, "summary": summary}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--capacities", default="8,32,128", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--latency", type=float, default=0.2, help="seconds per request at the server (default 0.2)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args()
    out = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
