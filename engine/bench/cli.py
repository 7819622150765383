"""The `persona bench` command: sweep an endpoint, print a table, save JSON and a plot; or compare two runs."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DESCRIPTION = """Benchmark an OpenAI-compatible endpoint through the engine's own client, in the manner of
vLLM's serving benchmark. Each step sends --requests prompts at one concurrency (closed loop)
or one request rate (Poisson arrivals) and reports req/s, input and output tokens/s, latency
p50/p90/p99, TTFT and inter-token latency (--stream) and errors; then the concurrency where
throughput saturates (the first step within 5% of the best).

  persona bench --base-url http://127.0.0.1:8000/v1 --model M --concurrency 1,4,16,64,256 --json a.json --plot a.png
  persona bench --base-url embedded            (the built-in SmolLM2 server: no network, no GPU)
  persona bench compare a.json b.json"""

EMBEDDED_DEFAULTS: dict[str, Any] = {"concurrency": [1, 2, 4, 8], "input_len": 64, "output_len": 32, "requests": 24}


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not (0 < v < math.inf) for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _ints(text: str) -> list[int]:
    values = _floats(text)
    if any(v != int(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected whole numbers, got {text!r}")
    return [int(v) for v in values]


def add_commands(subparsers: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Register `bench` (with its `compare` sub-mode) on the `persona` parser; returns {name: handler}."""
    p = subparsers.add_parser("bench", help="benchmark an endpoint: throughput and latency over a concurrency sweep",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", help="OpenAI-compatible server (…/v1), or 'embedded' for the built-in one")
    p.add_argument("--model", help="model name (default: the server's first in /v1/models)")
    p.add_argument("--api-key-env", default="", help="NAME of the environment variable holding the API key")
    p.add_argument("--concurrency", type=_ints, default=None,
                   help="comma-separated in-flight levels (default 1,4,16,64,256; embedded 1,2,4,8); "
                        "with --rate, the largest is the cap on requests in flight")
    p.add_argument("--rate", type=_floats, default=None, help="sweep request rates (req/s, Poisson) instead")
    p.add_argument("--requests", type=int, default=None,
                   help="requests per step (default max(50, 4 x concurrency); rate steps max(50, 10 x rate); "
                        "embedded 24)")
    p.add_argument("--input-len", type=int, default=None, help="synthetic prompt length, about N tokens (default 256)")
    p.add_argument("--output-len", type=int, default=None, help="max_tokens per request (default 128)")
    p.add_argument("--dataset", type=Path, help="JSONL prompts: 'prompt', 'text' or 'messages' per line")
    p.add_argument("--stream", action="store_true", help="stream (SSE) to measure TTFT and inter-token latency")
    p.add_argument("--ignore-eos", action="store_true",
                   help="ask vLLM / llama.cpp to generate exactly --output-len tokens (not OpenAI)")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request (default 600)")
    p.add_argument("--no-keepalive", action="store_true",
                   help="a new connection per streamed request (llama.cpp's server drops them after each "
                        "stream; on by default for --base-url embedded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-warmup", action="store_true", help="skip the single test request before the sweep")
    p.add_argument("--embedded-parallel", type=int, default=8, help="slots of the embedded server (default 8)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--plot", type=Path, help="write a PNG: throughput and p99 latency vs the swept value")
    sub = p.add_subparsers(dest="bench_command", metavar="compare")
    c = sub.add_parser("compare", help="print the differences between two `persona bench --json` files",
                       description="Compare two benchmark runs step by step (B against A).")
    c.add_argument("a", type=Path, metavar="A.json")
    c.add_argument("b", type=Path, metavar="B.json")
    return {"bench": cmd_bench}


def cmd_bench(args: argparse.Namespace) -> int:
    if getattr(args, "bench_command", None) == "compare":
        return cmd_compare(args)
    if not args.base_url:
        print("error: persona bench needs --base-url URL (or --base-url embedded)", file=sys.stderr)
        return 2
    from engine.runner import run_event_loop

    with _endpoint(args) as (base_url, model):
        doc = run_event_loop(_run(args, base_url, model))
    if doc is None:
        return 1
    return 0 if any(s["completed"] for s in doc["steps"]) else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from engine.bench import report

    a, b = report.read_json(args.a), report.read_json(args.b)
    print("\n".join(report.compare_lines(a, b, str(args.a), str(args.b))))
    return 0


@contextlib.contextmanager
def _endpoint(args: argparse.Namespace) -> Iterator[tuple[str, str | None]]:
    if args.base_url != "embedded":
        yield args.base_url, args.model
        return
    from engine.errors import ModelUnavailable
    from engine.local.llm import EmbeddedLLM, EmbeddedLLMError, EmbeddedSettings

    for key, value in EMBEDDED_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    print(f"starting the embedded LLM ({args.embedded_parallel} slots) ...", file=sys.stderr, flush=True)
    llm = EmbeddedLLM(EmbeddedSettings(parallel=args.embedded_parallel))
    try:
        llm.start()
    except EmbeddedLLMError as e:
        raise ModelUnavailable(str(e)) from None
    try:
        yield llm.base_url, args.model or llm.model
    finally:
        llm.stop()


async def _first_model(base_url: str, api_key: str | None) -> str:
    import aiohttp
    import msgspec

    from engine.errors import ConfigError

    url = base_url.rstrip("/")
    url = (url if url.endswith("/v1") else url + "/v1") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
            async with s.get(url, headers=headers) as resp:
                doc = msgspec.json.decode(await resp.read())
        return str(doc["data"][0]["id"])
    except Exception as e:  # any failure means the same thing to the user: name the model
        raise ConfigError("--model", f"not given, and {url} did not name one ({type(e).__name__}: {e})") from None


async def _run(args: argparse.Namespace, base_url: str, model: str | None) -> dict[str, Any] | None:
    from engine.bench import report, stats, sweep, workload
    from engine.bench.request import Streamer, build, send_plain
    from engine.client.http import EndpointClient, api_key_from_env

    api_key = api_key_from_env(args.api_key_env)
    if model is None:
        model = await _first_model(base_url, api_key)
    concurrency: list[int] = args.concurrency or [1, 4, 16, 64, 256]
    input_len = args.input_len or 256
    output_len = args.output_len or 128
    if args.rate:
        cap = max(args.concurrency) if args.concurrency else None
        plan = [("rate", r, args.requests or max(50, int(10 * r))) for r in args.rate]
        connections = cap or 1024
    else:
        cap = None
        plan = [("concurrency", float(c), args.requests or max(50, 4 * c)) for c in concurrency]
        connections = max(concurrency)
    if args.ignore_eos:
        print("note: --ignore-eos is sent as an extra field; servers other than vLLM/llama.cpp may refuse it",
              file=sys.stderr)

    def prompts(n: int, step: int) -> list[workload.Prompt]:
        if args.dataset is not None:
            return workload.from_jsonl(args.dataset, n, output_len)
        return workload.synthetic(n, input_len, output_len, seed=args.seed * 1000 + step)

    client = EndpointClient("bench", base_url, api_key=api_key, request_timeout=args.timeout,
                            max_connections=connections)
    streamer = Streamer(base_url, api_key=api_key, timeout=args.timeout, connections=connections,
                        keepalive=not (args.no_keepalive or args.base_url == "embedded"))
    steps: list[dict[str, Any]] = []
    async with client, streamer:
        async def send(p: workload.Prompt) -> Any:
            req = build(p, model, stream=args.stream, ignore_eos=args.ignore_eos, temperature=args.temperature)
            return await (streamer.send(req, p) if args.stream else send_plain(client, req, p))

        if not args.no_warmup:
            first = await send(prompts(1, -1)[0])
            if not first.ok:
                print(f"error: the test request to {base_url} (model {model!r}) failed: {first.error}",
                      file=sys.stderr)
                return None
        print(f"benchmark {model} @ {base_url}: {'streaming' if args.stream else 'non-streaming'}, "
              f"{'dataset ' + str(args.dataset) if args.dataset else f'~{input_len} in / {output_len} out tokens'}")
        print(report.header(), flush=True)
        for i, (mode, value, n) in enumerate(plan):
            batch = prompts(n, i)
            if mode == "rate":
                results, dur = await sweep.by_rate(send, batch, value, cap, seed=args.seed + i)
            else:
                results, dur = await sweep.by_concurrency(send, batch, int(value))
            step = stats.summarise(results, dur, mode, value)
            steps.append(step)
            print(report.step_line(step), flush=True)
    sat = stats.saturation(steps)
    print(report.saturation_line(sat))
    doc = {
        "version": 1,
        "tool": "persona bench",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {"base_url": args.base_url, "model": model, "stream": args.stream, "input_len": input_len,
                   "output_len": output_len, "dataset": str(args.dataset) if args.dataset else None,
                   "ignore_eos": args.ignore_eos, "temperature": args.temperature, "max_concurrency": cap,
                   "seed": args.seed},
        "steps": steps,
        "saturation": sat,
    }
    if args.json is not None:
        report.write_json(doc, args.json)
        print(f"wrote {args.json}")
    if args.plot is not None:
        report.plot(doc, args.plot)
        print(f"wrote {args.plot}")
    return doc
