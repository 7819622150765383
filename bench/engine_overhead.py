"""Engine overhead: req/s and client CPU-s per 1,000 requests vs an aiohttp floor and AsyncOpenAI.

Against a fast fixed-reply endpoint on loopback (nginx from bench/nginx/, or the fake server in a
separate process when nginx is absent) it sends N requests at concurrency C through

  (a) engine  this engine's full path (limiter, scheduler, client, sink, checkpointing on)
  (b) openai  openai-python AsyncOpenAI with a semaphore
  (c) floor   a plain aiohttp + uvloop + msgspec loop

each in its own subprocess, one after another, and prints a table with ratios vs the floor and vs
AsyncOpenAI. CPU is resource.getrusage(RUSAGE_SELF) user+sys in the child (all its threads),
taken around the send loop only (imports and input preparation excluded).

    python bench/engine_overhead.py [--requests 20000] [--concurrency 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec

HERE = Path(__file__).resolve().parent
MODEL = "bench-model"
MAX_TOKENS = 64
LABELS = {"engine": "(a) engine full path", "openai": "(b) AsyncOpenAI + semaphore",
          "floor": "(c) aiohttp+uvloop+msgspec"}


def prompt(i: int) -> str:
    """The i-th request's text; distinct per request so nothing can be cached or deduplicated."""
    return f"Text {i}: a field report on coral reef resilience, written for recreational divers."


def run_loop(main: Callable[[], Any]) -> Any:
    """Run a coroutine function on uvloop when installed (all methods alike), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


class Msg(msgspec.Struct):
    role: str
    content: str


class Req(msgspec.Struct):
    """The request the floor sends (the same fields as the other methods)."""

    model: str
    messages: list[Msg]
    max_tokens: int


class Message(msgspec.Struct):
    content: str


class Choice(msgspec.Struct):
    message: Message


class Usage(msgspec.Struct):
    total_tokens: int


class Resp(msgspec.Struct):
    """The reply fields the floor decodes and checks."""

    choices: list[Choice]
    usage: Usage | None = None


# -- (c) the floor ------------------------------------------------------------------------------
def run_floor(base_url: str, n: int, concurrency: int, outdir: Path) -> int:
    """C workers share one aiohttp session; msgspec encodes requests and decodes typed replies."""
    import aiohttp

    encode, decode = msgspec.json.Encoder().encode, msgspec.json.Decoder(Resp).decode
    url, headers = base_url + "/v1/chat/completions", {"Content-Type": "application/json"}

    async def main() -> int:
        ok = 0
        todo = iter(range(n))
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                nonlocal ok
                for i in todo:
                    body = encode(Req(MODEL, [Msg("user", prompt(i))], MAX_TOKENS))
                    async with session.post(url, data=body, headers=headers) as r:
                        raw = await r.read()
                        if r.status == 200 and decode(raw).choices[0].message.content:
                            ok += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ok

    return int(run_loop(main))


# -- (b) openai-python --------------------------------------------------------------------------
def run_openai(base_url: str, n: int, concurrency: int, outdir: Path) -> int:
    """The usual pattern: one task per request, a semaphore of C, default client settings."""
    from openai import AsyncOpenAI

    async def main() -> int:
        client = AsyncOpenAI(base_url=base_url + "/v1", api_key="bench")
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> bool:
            async with sem:
                r = await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": prompt(i)}],
                    max_tokens=MAX_TOKENS)
                return bool(r.choices[0].message.content)

        results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
        await client.close()
        return sum(r is True for r in results)

    return int(run_loop(main))


# -- (a) the engine -----------------------------------------------------------------------------
EXTRA: dict[str, Any] = {}  # a runner's extra figures, reported with its Result


def prepare_engine(n: int, outdir: Path) -> None:
    """Write the engine's input, N distinct texts one a line (before the clock starts)."""
    with open(outdir / "input.txt", "w") as f:
        f.writelines(prompt(i) + "\n" for i in range(n))


def run_engine(base_url: str, n: int, concurrency: int, outdir: Path) -> int:
    """The engine's full path: limiter, scheduler, client, Text-to-Persona, gate, sink, checkpoints.

    The fixed reply is the same persona each time, so the exact-dedup gate accepts the first and
    rejects the rest: cheap, and still every reply is parsed, validated and gated.
    """
    from engine import config, runner

    if not (outdir / "input.txt").exists():
        prepare_engine(n, outdir)
    cfg = config.from_dict({
        "run": {"checkpoint_interval": 2.0, "progress": "off", "queue_size": 0},
        "endpoints": {"bench": {"base_url": base_url, "model": MODEL, "max_in_flight": concurrency,
                                "structured_output": False, "max_retries": 3}},
        "text_to_persona": {"endpoint": "bench", "format": "json", "max_tokens": MAX_TOKENS},
        "gate": {"minhash": {"enabled": False}, "semantic": {"enabled": False}},
        "expansion": {"enabled": False},
        "synthesis": {"enabled": False},
    })
    result = runner.execute(cfg, outdir / "run", [str(outdir / "input.txt")], progress_mode="off")
    if result.status != "finished":
        raise RuntimeError(f"engine run {result.status}: {result.error}")
    EXTRA["counters"] = dict(result.counters)
    return int(result.counters.get("inputs_done", 0))


PREPARE: dict[str, Callable[[int, Path], None]] = {"engine": prepare_engine}
IMPORTS = {"engine": ("aiohttp", "engine.config", "engine.runner"), "openai": ("openai",),
           "floor": ("aiohttp",)}
RUNNERS: dict[str, Callable[[str, int, int, Path], int]] = {
    "engine": run_engine, "openai": run_openai, "floor": run_floor}


@dataclass
class Result:
    """One method's figures, as its child process reports them."""

    method: str
    requests: int
    ok: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    pending: str = ""
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_per_1k(self) -> float:
        return 1000 * self.cpu_s / self.ok if self.ok else 0.0


def child(method: str, base_url: str, n: int, concurrency: int, outdir: Path) -> None:
    """Run one method in this process and print its Result as one JSON line."""
    res = Result(method, n)
    for module in IMPORTS[method]:  # imports are not the method's per-request cost
        try:
            importlib.import_module(module)
        except ImportError as exc:
            res.error = f"{exc} (pip install -e '.[bench]')"
            print(json.dumps(asdict(res)), flush=True)
            return
    if method in PREPARE:
        PREPARE[method](n, outdir)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    try:
        res.ok = RUNNERS[method](base_url, n, concurrency, outdir)
    except NotImplementedError as exc:
        res.pending = str(exc)
    except Exception as exc:  # report, don't hide: the table shows the error
        res.error = f"{type(exc).__name__}: {exc}"
    res.wall_s = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    res.cpu_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    res.extra = EXTRA
    print(json.dumps(asdict(res)), flush=True)


# -- endpoints ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"endpoint exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"endpoint at {url} did not come up in {timeout:.0f} s")


@contextmanager
def nginx_endpoint(nginx: str) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """Run nginx in the foreground with its own temp prefix and the fixed reply; stop it after."""
    prefix = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    port = free_port()
    body = json.dumps(json.loads((HERE / "nginx" / "chat_completion.json").read_text()),
                      separators=(",", ":"))
    # nginx unescapes \\ and \' inside quoted strings and expands $variables: keep the JSON intact.
    assert "$" not in body, "the fixed reply must not contain '$' (nginx variables)"
    body = body.replace("\\", "\\\\").replace("'", "\\'")
    conf = (HERE / "nginx" / "nginx.conf.template").read_text()
    conf = conf.replace("@PORT@", str(port)).replace("@PREFIX@", str(prefix))
    (prefix / "nginx.conf").write_text(conf.replace("@BODY@", body))
    proc = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                             "-e", str(prefix / "error.log")])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc)
        yield url, proc
    finally:
        proc.terminate()  # SIGTERM = fast shutdown of master and workers
        proc.wait(timeout=15)
        shutil.rmtree(prefix, ignore_errors=True)


@contextmanager
def fake_endpoint() -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """Run the engine's fake server (engine.testing.fake_openai) as a separate process."""
    proc = subprocess.Popen([sys.executable, "-m", "engine.testing.fake_openai", "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().rsplit(" ", 1)[-1].strip()
        wait_until_up(url, proc)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (nginx workers), or 0 without psutil."""
    try:
        import psutil
    except ImportError:
        return 0.0
    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


# -- report -------------------------------------------------------------------------------------
def table(results: list[Result], endpoint: str, args: argparse.Namespace) -> str:
    by = {r.method: r for r in results}
    floor, oai = by.get("floor"), by.get("openai")
    lines = [f"endpoint: {endpoint}; {args.requests} requests at concurrency {args.concurrency};"
             f" {os.cpu_count()} CPUs; loop: uvloop where installed",
             f"{'method':30} {'req/s':>8} {'CPU-s/1k':>9} {'CPU/floor':>9} {'CPU/openai':>10}"
             f" {'req/s/floor':>11} {'ok':>7}"]
    for r in results:
        if r.pending or r.error:
            lines.append(f"{LABELS[r.method]:30} {r.pending or r.error}")
            continue

        def ratio(ref: Result | None, attr: str, r: Result = r) -> str:
            base = getattr(ref, attr) if ref and ref.ok else 0.0
            return f"{getattr(r, attr) / base:.2f}x" if base else "-"

        lines.append(f"{LABELS[r.method]:30} {r.rps:8.0f} {r.cpu_per_1k:9.3f}"
                     f" {ratio(floor, 'cpu_per_1k'):>9} {ratio(oai, 'cpu_per_1k'):>10}"
                     f" {ratio(floor, 'rps'):>11} {r.ok:>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--methods", default="engine,openai,floor", help="comma-separated subset")
    p.add_argument("--endpoint", choices=["auto", "nginx", "fake"], default="auto")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--child", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    p.add_argument("--base-url", help=argparse.SUPPRESS)
    p.add_argument("--outdir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.base_url, args.requests, args.concurrency, args.outdir)
        return

    nginx = shutil.which("nginx") or next(
        (c for c in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(c, os.X_OK)), None)
    if args.endpoint == "nginx" and not nginx:
        p.error("nginx not found (apt-get install -y nginx)")
    use_nginx = args.endpoint == "nginx" or (args.endpoint == "auto" and nginx is not None)
    if use_nginx:
        endpoint, ctx = f"nginx fixed reply ({nginx})", nginx_endpoint(str(nginx))
    else:
        endpoint = ("FALLBACK: fake_openai in a separate process"
                    f" ({'nginx absent; ' if not nginx else ''}req/s is server-bound)")
        ctx = fake_endpoint()
    results: list[Result] = []
    server_cpu: dict[str, float] = {}
    with ctx as (url, server), tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        for method in args.methods.split(","):
            outdir = Path(tmp) / method
            outdir.mkdir()
            cpu0 = tree_cpu(server.pid)
            cmd = [sys.executable, __file__, "--child", method, "--base-url", url,
                   "--requests", str(args.requests), "--concurrency", str(args.concurrency),
                   "--outdir", str(outdir)]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
            server_cpu[method] = tree_cpu(server.pid) - cpu0
            try:
                results.append(Result(**json.loads(out.stdout.strip().splitlines()[-1])))
            except (IndexError, json.JSONDecodeError):
                results.append(Result(method, args.requests,
                                      error=f"child failed: {out.stderr.strip()[-400:]}"))
    print(table(results, endpoint, args))
    if args.json:
        figures = [{**asdict(r), "req_per_s": r.rps, "cpu_s_per_1k": r.cpu_per_1k,
                    "server_cpu_s": server_cpu.get(r.method)} for r in results]
        args.json.write_text(json.dumps({"endpoint": endpoint, "requests": args.requests,
                                         "concurrency": args.concurrency, "cpus": os.cpu_count(),
                                         "results": figures}, indent=2))


if __name__ == "__main__":
    main()
