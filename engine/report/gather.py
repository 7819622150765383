"""Counts over an output directory: personas, gate rejections, dead letters, task records, usage.

One streaming pass per file; nothing but counters is kept, so it scales with the number of
distinct keys (depths, reasons, relations, models), not with the number of records.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import msgspec

from engine.report.frames import FrameReader

TASKS = ("math", "logic", "instruction", "knowledge", "npc", "tool")
GATE_STAGES = ("quality", "exact", "minhash", "semantic")
TOP_RELATIONS = 20
UNKNOWN_MODEL = "(unknown)"


def rate(part: int, whole: int) -> float | None:
    """part / whole, rounded; None when there is no whole."""
    return round(part / whole, 4) if whole else None


def _int(v: Any) -> int:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def usage_of(rec: dict[str, Any]) -> tuple[int, int]:
    """(prompt, completion) tokens of a record's `usage` (nested per-request dicts are summed)."""
    u = rec.get("usage")
    if not isinstance(u, dict):
        return 0, 0
    if "prompt_tokens" in u or "completion_tokens" in u:
        return _int(u.get("prompt_tokens")), _int(u.get("completion_tokens"))
    p = c = 0
    for v in u.values():
        if isinstance(v, dict):
            p += _int(v.get("prompt_tokens"))
            c += _int(v.get("completion_tokens"))
    return p, c


class Usage:
    """Token sums by model and by file."""

    def __init__(self) -> None:
        self.by_model: dict[str, Counter[str]] = defaultdict(Counter)
        self.by_file: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, file: str, rec: dict[str, Any]) -> None:
        p, c = usage_of(rec)
        if not (p or c):
            return
        model = str(rec.get("model") or UNKNOWN_MODEL)
        shares = {model: (p, c)}
        solver = str(rec.get("solver_model") or model)
        sp, sc = usage_of({"usage": rec.get("solver_usage")})
        if solver != model and (sp or sc):  # math: the solutions are the solver's tokens, at its price
            shares = {model: (max(p - sp, 0), max(c - sc, 0)), solver: (sp, sc)}
        for name, (mp, mc) in shares.items():
            _count(self.by_model[name], mp, mc)
        _count(self.by_file[file], p, c)

    def as_dict(self) -> dict[str, Any]:
        total: Counter[str] = Counter()
        for c in self.by_model.values():
            total.update(c)
        return {"by_model": {m: dict(c) for m, c in sorted(self.by_model.items())},
                "by_file": {f: dict(c) for f, c in sorted(self.by_file.items())},
                "recorded": {"prompt_tokens": total["prompt_tokens"], "completion_tokens": total["completion_tokens"]}}


def _stages(counters: dict[str, int]) -> dict[str, dict[str, int]]:
    """Work items finished and dead-lettered per stage (text_to_persona, math.solve, ...), from the counters."""
    out: dict[str, dict[str, int]] = {}
    for key, n in counters.items():
        kind, _, stage = key.partition(".")
        if kind in ("done", "dead") and stage:
            out.setdefault(stage, {"done": 0, "dead": 0})[kind] = n
    first = ("text_to_persona", "persona_to_persona")  # then the tasks, by name
    return dict(sorted(out.items(), key=lambda kv: (first.index(kv[0]) if kv[0] in first else 2, kv[0])))


def _count(bucket: Counter[str], prompt: int, completion: int) -> None:
    bucket["prompt_tokens"] += prompt
    bucket["completion_tokens"] += completion
    bucket["records"] += 1


def _scan(path: Path) -> FrameReader | None:
    return FrameReader(path) if path.exists() else None


def _close(name: str, reader: FrameReader, files: dict[str, Any]) -> None:
    files[name] = {"records": reader.records, "partial_tail_bytes": reader.tail_bytes, "bad_lines": reader.bad_lines}
    if reader.error:
        files[name]["error"] = reader.error


def _personas(outdir: Path, files: dict[str, Any], usage: Usage) -> tuple[dict[str, Any], Counter[int], set[str]]:
    depth: Counter[int] = Counter()
    relations: Counter[str] = Counter()
    models: Counter[str] = Counter()
    roots: set[str] = set()
    reader = _scan(outdir / "personas.jsonl.zst")
    if reader is not None:
        for rec in reader:
            d = _int(rec.get("depth"))
            depth[d] += 1
            if d == 0:
                roots.add(str(rec.get("source_id")))
            elif rec.get("relation"):
                relations[str(rec["relation"]).strip().lower()] += 1
            models[str(rec.get("model") or UNKNOWN_MODEL)] += 1
            usage.add("personas", rec)
        _close("personas", reader, files)
    expanded = sum(n for d, n in depth.items() if d >= 1)
    out = {
        "accepted": sum(depth.values()),
        "by_depth": {str(d): depth[d] for d in sorted(depth)},
        "expanded": expanded,
        "expanded_by_depth": {str(d): depth[d] for d in sorted(depth) if d >= 1},
        "relations": [{"relation": r, "count": n, "share": rate(n, expanded)}
                      for r, n in relations.most_common(TOP_RELATIONS)],
        "relations_distinct": len(relations),
        "by_model": dict(models.most_common()),
    }
    return out, depth, roots


def _gate(outdir: Path, files: dict[str, Any], accepted_by_depth: Counter[int]) -> dict[str, Any]:
    by_stage: Counter[str] = Counter()
    by_reason: Counter[tuple[str, str]] = Counter()
    by_depth: Counter[int] = Counter()
    reader = _scan(outdir / "rejected.jsonl.zst")
    if reader is not None:
        for rec in reader:
            stage = str(rec.get("stage") or "unknown")
            by_stage[stage] += 1
            by_reason[(stage, str(rec.get("reason") or "unknown"))] += 1
            by_depth[_int(rec.get("depth"))] += 1
        _close("rejected", reader, files)
    rejected = sum(by_stage.values())
    candidates = sum(accepted_by_depth.values()) + rejected
    stages: dict[str, Any] = {}
    reaching = candidates  # the gate runs its stages in order; each sees what the earlier ones let through
    order = [s for s in GATE_STAGES if s in by_stage] + sorted(set(by_stage) - set(GATE_STAGES))
    for s in order:
        n = by_stage[s]
        stages[s] = {"count": n, "rate": rate(n, candidates), "rate_of_reaching": rate(n, reaching)}
        reaching -= n
    depths = sorted(set(by_depth) | set(accepted_by_depth))
    return {
        "candidates": candidates,
        "rejected": rejected,
        "reject_rate": rate(rejected, candidates),
        "by_stage": stages,
        "by_reason": [{"stage": s, "reason": r, "count": n, "rate": rate(n, candidates)}
                      for (s, r), n in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))],
        "by_depth": {str(d): {"candidates": by_depth[d] + accepted_by_depth[d], "rejected": by_depth[d],
                              "reject_rate": rate(by_depth[d], by_depth[d] + accepted_by_depth[d])} for d in depths},
    }


def reason_key(reason: str) -> str:
    """A dead letter's reason without its details: "unusable reply after 4 tries: ..." -> its head."""
    head = reason.split(": ", 1)[0].strip()
    return head[:80] or "unknown"


def _dead(outdir: Path, files: dict[str, Any]) -> tuple[dict[str, Any], Counter[str]]:
    by_stage: Counter[str] = Counter()
    by_reason: Counter[tuple[str, str]] = Counter()
    example: dict[tuple[str, str], str] = {}
    reader = _scan(outdir / "dead_letter.jsonl.zst")
    if reader is not None:
        for rec in reader:
            stage = str(rec.get("stage") or "unknown")
            reason = str(rec.get("reason") or "unknown")
            key = (stage, reason_key(reason))
            by_stage[stage] += 1
            by_reason[key] += 1
            example.setdefault(key, reason[:300])
        _close("dead_letter", reader, files)
    per_task: Counter[str] = Counter()
    for stage, n in by_stage.items():
        head = stage.split(".", 1)[0]
        if head in TASKS:
            per_task[head] += n
    return {
        "total": sum(by_stage.values()),
        "by_stage": dict(by_stage.most_common()),
        "by_reason": [{"stage": s, "reason": r, "count": n, "example": example[(s, r)]}
                      for (s, r), n in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))],
    }, per_task


def _constraint_key(c: Any) -> str:
    if not c:
        return "none"
    if isinstance(c, dict):
        parts = [f"{k}={v}" for k, v in sorted(c.items()) if v not in (None, "", 0, [], {})]
        return ", ".join(parts) or "none"
    return json.dumps(c, sort_keys=True)


def _tasks(outdir: Path, files: dict[str, Any], usage: Usage, dead_per_task: Counter[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for task in TASKS:
        reader = _scan(outdir / f"{task}.jsonl.zst")
        if reader is None:
            continue
        modes: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        constraints: Counter[str] = Counter()
        personas: set[str] = set()
        verified = 0
        for rec in reader:
            modes[str(rec.get("mode") or "unknown")] += 1
            if rec.get("kind"):
                kinds[str(rec["kind"])] += 1
            constraints[_constraint_key(rec.get("constraints"))] += 1
            if rec.get("persona_id") is not None:
                personas.add(str(rec["persona_id"]))
            if rec.get("verified") is True:
                verified += 1
            usage.add(task, rec)
        _close(task, reader, files)
        n = reader.records
        t: dict[str, Any] = {"records": n, "personas": len(personas), "by_mode": dict(modes.most_common()),
                             "by_constraints": dict(constraints.most_common()),
                             "dead_letters": dead_per_task.get(task, 0)}
        if kinds:
            t["by_kind"] = dict(kinds.most_common())
        if task == "math":
            t["verified"] = verified
            t["verified_share"] = rate(verified, n)
        out[task] = t
    for task, n in dead_per_task.items():  # a task that failed for every persona still shows up
        out.setdefault(task, {"records": 0, "personas": 0, "by_mode": {}, "by_constraints": {}, "dead_letters": n})
    return out


def read_checkpoint(outdir: Path) -> dict[str, Any]:
    """The run's latest counters and state, from checkpoint/status.json or state.json, whichever is newer."""
    d = outdir / "checkpoint"
    found: list[tuple[float, str, dict[str, Any]]] = []
    for name, stamp in (("status.json", "updated"), ("state.json", "created_at")):
        try:
            doc = msgspec.json.decode((d / name).read_bytes())
        except (OSError, msgspec.DecodeError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("counters"), dict):
            found.append((float(doc.get(stamp) or 0.0), name, doc))
    if not found:
        return {"source": None, "state": "unknown", "counters": {}}
    found.sort(key=lambda f: f[0])
    at, name, doc = found[-1]
    if name == "status.json":
        state = str(doc.get("state") or "unknown")
    else:
        state = "finished" if doc.get("finished") else "checkpointed"
    counters = {k: v for k, v in doc["counters"].items() if isinstance(v, int)}
    return {"source": f"checkpoint/{name}", "state": state, "updated": at, "counters": counters}


def gather(outdir: Path) -> dict[str, Any]:
    """Every count of the report except the cost and the diversity check."""
    outdir = Path(outdir)
    files: dict[str, Any] = {}
    usage = Usage()
    personas, accepted_by_depth, roots = _personas(outdir, files, usage)
    gate = _gate(outdir, files, accepted_by_depth)
    dead, dead_per_task = _dead(outdir, files)
    tasks = _tasks(outdir, files, usage, dead_per_task)
    ckpt = read_checkpoint(outdir)
    c = ckpt["counters"]
    u = usage.as_dict()
    u["requests"] = {"prompt_tokens": c.get("prompt_tokens", 0), "completion_tokens": c.get("completion_tokens", 0),
                     "requests": c.get("requests", 0), "source": ckpt["source"]}
    # requests whose tokens no record carries: retries, rejected personas, dead letters, partial frames
    u["unattributed"] = {k: max(0, u["requests"][k] - u["recorded"][k]) for k in ("prompt_tokens", "completion_tokens")}
    return {
        "run": {"state": ckpt["state"], "checkpoint": ckpt["source"], "updated": ckpt.get("updated"),
                "inputs_done": c.get("inputs_done"), "inputs_with_persona": len(roots),
                "requests": c.get("requests"), "retries": c.get("retries"), "bad_replies": c.get("bad_replies"),
                "stages": _stages(c)},
        "files": files,
        "personas": personas,
        "gate": gate,
        "dead_letters": dead,
        "tasks": tasks,
        "usage": u,
    }
