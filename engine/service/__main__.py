"""`python -m engine.service COMMAND`: the daemon's commands without the rest of the CLI."""

from __future__ import annotations

import argparse
import sys

from engine.service.cli import add_commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.service")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = add_commands(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
