"""The `persona` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from engine import __version__
from engine.errors import PersonaError

EPILOG = """exit codes: 0 finished, 1 error (the message names what and where), 2 usage error,
130 interrupted and resumable (run the same command again to resume)."""


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, default=None,
                   help="config file (default: ./config.toml when present, else built-in defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set run.checkpoint_interval=5 (repeatable; value is TOML)")


def _endpoint_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("endpoint (overrides the config; makes every stage use this endpoint)")
    g.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1, or 'embedded'")
    g.add_argument("--model", help="model name to send")
    g.add_argument("--api-key-env", help="NAME of the environment variable holding the API key")
    g.add_argument("--concurrency", type=int, help="max requests in flight")
    g.add_argument("--rpm", type=float, help="requests per minute (0 = no limit)")
    g.add_argument("--tpm", type=float, help="tokens per minute (0 = no limit)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="persona", description="Persona-driven synthetic data at scale (the Persona Hub method).", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"persona-engine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="Text-to-Persona -> gate -> expansion -> synthesis, as the config says",
                         description="Run the pipeline over INPUT files (or the config's inputs). Running it again "
                                     "on an existing OUTDIR resumes where it stopped; a different config is refused "
                                     "unless --force.", epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("inputs", nargs="*", metavar="INPUT",
                     help=".txt (one text per line), .jsonl, .jsonl.zst or .parquet; 'demo' = the demo corpus")
    _config_args(run)
    run.add_argument("-o", "--output", type=Path, help="output directory (default: run.output_dir)")
    run.add_argument("--limit", type=int, help="process at most N inputs")
    run.add_argument("--force", action="store_true",
                     help="resume even if the config changed (outputs then mix both), or overwrite foreign files")
    run.add_argument("--text-field", help='JSON field holding the text (default "text")')
    run.add_argument("--id-field", help='JSON field holding the id (default "id"; else a content hash)')
    run.add_argument("--progress", choices=["auto", "bar", "log", "off"], help="progress display")
    run.add_argument("--no-report", action="store_true", help="skip the report (report.json, plots) at the end")
    _endpoint_args(run)

    dd = sub.add_parser("dedup", help="the dedup gate alone over existing persona files",
                        description="Run the gate (quality -> exact -> MinHash -> semantic, as the config's [gate] "
                                    "says) over persona files in order, keeping the first of each group. Writes "
                                    "OUTDIR/personas.jsonl.zst (kept records, input ids and fields kept) and "
                                    "OUTDIR/rejected.jsonl.zst (stage, reason, score, duplicate_of).")
    dd.add_argument("inputs", nargs="+", metavar="INPUT", help=".jsonl, .jsonl.zst or .parquet persona files")
    dd.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    dd.add_argument("--text-field", default="persona", help='field holding the persona text (default "persona")')
    dd.add_argument("--id-field", default="id", help='field holding the id (default "id"; else a content hash)')
    _config_args(dd)

    from engine.report.cli import add_command as add_report_command

    COMMANDS.update(add_report_command(sub))

    from engine.service.cli import add_commands as add_service_commands

    COMMANDS.update(add_service_commands(sub))
    from engine.bench.cli import add_commands as add_bench_commands

    COMMANDS.update(add_bench_commands(sub))
    return parser


def _load_config(args: argparse.Namespace) -> tuple[object, Path]:
    from engine import config

    overrides = list(args.overrides)
    for flag, key in (("base_url", "base_url"), ("model", "model"), ("api_key_env", "api_key_env"),
                      ("concurrency", "max_in_flight"), ("rpm", "requests_per_minute"), ("tpm", "tokens_per_minute")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"endpoints.default.{key}={value!r}" if isinstance(value, str) else
                             f"endpoints.default.{key}={value}")
    for flag, key in (("limit", "run.limit"), ("text_field", "run.text_field"), ("id_field", "run.id_field")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    path = args.config
    if path is None and Path("config.toml").exists():
        path = Path("config.toml")
    return config.load(path, overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from engine import runner

    cfg, _ = _load_config(args)
    inputs = list(args.inputs) or list(cfg.run.inputs)  # type: ignore[attr-defined]
    if not inputs:
        print("error: no inputs: name INPUT files or set run.inputs in the config", file=sys.stderr)
        return runner.EXIT_USAGE
    outdir = args.output or Path(cfg.run.output_dir)  # type: ignore[attr-defined]
    result = runner.execute(cfg, outdir, inputs, force=args.force, progress_mode=args.progress)  # type: ignore[arg-type]
    print(runner.summary(result))
    if result.status == "finished" and not args.no_report:
        from engine.report import render_text, write_report
        from engine.report.cli import where

        report = write_report(outdir, cfg)
        print()
        print(render_text(report))
        print(where(report))
    if result.status == "stopped":
        print(f"\ninterrupted; everything done so far is saved. Resume with:\n  {runner.resume_command()}",
              file=sys.stderr)
    elif result.status == "failed":
        print(f"\nerror: {result.error}\nprogress is saved; fix the cause and resume with:\n"
              f"  {runner.resume_command()}",
              file=sys.stderr)
    return result.exit_code


def cmd_dedup(args: argparse.Namespace) -> int:
    from engine.offline import dedup_files

    cfg, _ = _load_config(args)
    counts = dedup_files(cfg, args.inputs, args.output, text_field=args.text_field, id_field=args.id_field)  # type: ignore[arg-type]
    rejected = {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith("rejected.")}
    print(f"read {counts['read']}, kept {counts['kept']}, rejected {sum(rejected.values())}"
          + (f" ({', '.join(f'{k} {v}' for k, v in sorted(rejected.items()))})" if rejected else "")
          + (f", skipped {counts['skipped']} without text" if counts["skipped"] else ""))
    print(f"output  {args.output}/personas.jsonl.zst, {args.output}/rejected.jsonl.zst")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"run": cmd_run, "dedup": cmd_dedup}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except PersonaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
