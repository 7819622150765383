"""Prometheus metrics of the daemon and its jobs, built at scrape time from the jobs' status.

The counters come from each child's status.json (they continue across restarts, since a
resumed run starts from its checkpoint's counters; a kill -9 can step them back to the last
checkpoint, which Prometheus treats as a counter reset). The label is `job_id`, not `job`,
which Prometheus reserves for the scrape job.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from engine.service.api import ACTIVE, STATES

if TYPE_CHECKING:
    from engine.service.supervisor import Supervisor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _histogram(name: str, doc: str, job_id: str, data: dict[str, Any]) -> HistogramMetricFamily | None:
    """A latency histogram from status.json: {"buckets": {le: n}, "sum": s} or a bare {le: n}."""
    raw = data.get("buckets", data)
    if not isinstance(raw, dict):
        return None
    pairs: list[tuple[float, float]] = []
    for le, n in raw.items():
        try:
            pairs.append((float(le), float(n)))
        except (TypeError, ValueError):
            continue
    if not pairs:
        return None
    pairs.sort()
    if any(b[1] < a[1] for a, b in zip(pairs, pairs[1:], strict=False)):  # per-bucket counts: make them cumulative
        acc = 0.0
        pairs = [(le, acc := acc + n) for le, n in pairs]
    if not math.isinf(pairs[-1][0]):
        pairs.append((math.inf, pairs[-1][1]))
    fam = HistogramMetricFamily(name, doc, labels=["job_id"])
    buckets = [("+Inf" if math.isinf(le) else repr(le), n) for le, n in pairs]
    fam.add_metric([job_id], buckets, sum_value=float(data.get("sum", 0.0) or 0.0))
    return fam


class JobsCollector:
    """Yields every metric family from the supervisor's jobs at scrape time (no per-request cost)."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    def collect(self) -> Iterable[Metric]:
        sup, now = self.sup, time.time()
        keep = sup.cfg.service.keep_finished_metrics
        jobs = [j for j in sup.jobs.values()
                if j.state not in ("finished", "failed", "cancelled") or now - (j.finished_at or now) <= keep]
        states = GaugeMetricFamily("persona_jobs", "Jobs by state.", labels=["state"])
        for s in STATES:
            states.add_metric([s], sup.count(s))
        yield states

        def g(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=["job_id", *labels])

        def c(name: str, doc: str, *labels: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=["job_id", *labels])

        info = g("persona_job_info", "One series per job, for tables.", "name", "state")
        requests = c("persona_requests", "Requests to LLM endpoints by outcome (error = sent - ok - in flight).",
                     "outcome")
        sent = c("persona_requests_sent", "Requests sent to LLM endpoints.")
        tokens = c("persona_tokens", "Tokens reported by the endpoints.", "kind")
        limited = c("persona_rate_limited", "HTTP 429 answers.")
        retries = c("persona_retries", "Requests queued for another try.")
        dead = c("persona_dead_letters", "Work that failed for good (dead letter).")
        bad = c("persona_bad_replies", "Replies that could not be parsed.")
        accepted = c("persona_gate_accepted", "Personas the gate accepted.")
        rejected = c("persona_gate_rejected", "Personas the gate rejected, by stage and reason.", "stage", "reason")
        done = c("persona_stage_done", "Work items completed, by stage.", "stage")
        inputs_done = c("persona_inputs_done", "Inputs done.")
        inputs_total = g("persona_inputs_total", "Inputs in the job (when known).")
        in_flight = g("persona_in_flight", "Work items in flight in the job.")
        ep_in_flight = g("persona_endpoint_in_flight", "Requests in flight, by endpoint.", "endpoint")
        limit = g("persona_concurrency_limit", "Max in flight given to the job (its fair share), by endpoint.",
                  "endpoint")
        queue = g("persona_queue_depth", "Work waiting in the job's queue, by lane.", "lane")
        age = g("persona_checkpoint_age_seconds", "Seconds since the job's last checkpoint.")
        eta = g("persona_eta_seconds", "Estimated seconds to finish the inputs.")
        rate = g("persona_request_rate", "Requests per second over the last minute.")
        launches = c("persona_job_launches", "Times the job's process was (re)started.")
        rss = g("persona_job_rss_bytes", "Resident memory of the job's process.")
        hists: list[Metric] = []
        for job in jobs:
            t = sup.trackers.get(job.id)
            snap = t.snap if t is not None else None
            cn: dict[str, int] = snap.counters if snap is not None else {}
            j = [job.id]
            info.add_metric([job.id, job.name, job.state], 1)
            ok, n_sent = cn.get("ok", 0), cn.get("requests", 0)
            n_in_flight = snap.in_flight if snap is not None and job.state in ACTIVE else 0
            requests.add_metric([job.id, "ok"], ok)
            requests.add_metric([job.id, "error"], max(0, n_sent - ok - n_in_flight))
            sent.add_metric(j, n_sent)
            tokens.add_metric([job.id, "prompt"], cn.get("prompt_tokens", 0))
            tokens.add_metric([job.id, "completion"], cn.get("completion_tokens", 0))
            limited.add_metric(j, cn.get("rate_limited", 0))
            retries.add_metric(j, cn.get("retries", 0))
            dead.add_metric(j, cn.get("dead", 0))
            bad.add_metric(j, cn.get("bad_replies", 0))
            accepted.add_metric(j, cn.get("accepted", 0))
            inputs_done.add_metric(j, cn.get("inputs_done", 0))
            launches.add_metric(j, job.launches)
            for key, n in cn.items():
                if key.startswith("reason."):
                    stage, _, reason = key[7:].partition(".")
                    rejected.add_metric([job.id, stage, reason], n)
                elif key.startswith("done."):
                    done.add_metric([job.id, key[5:]], n)
            for name, a in job.allot.items():
                limit.add_metric([job.id, name], a[0])
            if snap is None or job.state not in ACTIVE:
                continue
            if snap.total is not None:
                inputs_total.add_metric(j, snap.total)
            in_flight.add_metric(j, n_in_flight)
            for name, stats in snap.endpoints.items():
                if isinstance(stats.get("in_flight"), (int, float)):
                    ep_in_flight.add_metric([job.id, name], stats["in_flight"])
            for lane in ("ready", "inputs", "delayed"):
                if lane in snap.queue:
                    queue.add_metric([job.id, lane], snap.queue[lane])
            if snap.checkpoint_mtime is not None:
                age.add_metric(j, max(0.0, now - snap.checkpoint_mtime))
            if (e := t.eta() if t is not None else None) is not None:
                eta.add_metric(j, e)
            rate.add_metric(j, t.rates()[0] if t is not None else 0.0)
            if (r := _rss(job.pid)) is not None:
                rss.add_metric(j, r)
            if snap.latency_buckets and (h := _histogram(
                    "persona_request_latency_seconds", "Request latency.", job.id, snap.latency_buckets)):
                hists.append(h)
        yield from (info, requests, sent, tokens, limited, retries, dead, bad, accepted, rejected, done,
                    inputs_done, inputs_total, in_flight, ep_in_flight, limit, queue, age, eta, rate, launches, rss)
        yield from _merge(hists)


def _merge(hists: list[Metric]) -> Iterable[Metric]:
    """One family for every job's latency histogram."""
    if not hists:
        return
    fam = hists[0]
    for h in hists[1:]:
        fam.samples.extend(h.samples)
    yield fam


def registry(sup: Supervisor) -> CollectorRegistry:
    """The daemon's own registry: its jobs, and its process (memory, CPU, fds)."""
    reg = CollectorRegistry()
    reg.register(JobsCollector(sup))
    ProcessCollector(registry=reg)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
