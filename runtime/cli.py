"""The `wse` command line.

Subcommands are modules registered under the ``wse.commands`` entry-point group in pyproject.toml (runtime's own and
benchmarks'), so this file never imports benchmarks/ and ``wse --help`` imports no JAX: each command module is light
at import time and pulls JAX inside its ``run``.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> dict``; it may define
``render(result, console)`` for the human-readable form. Contract: with ``--json`` the last line of stdout is one JSON
object with the result; a user error exits with status 2 and one ``error:`` line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from importlib.metadata import entry_points

# Order in `wse --help`; commands not listed here (from other packages) follow alphabetically.
_ORDER = ["info", "plan", "data", "train", "finetune", "generate", "eval", "convert", "bench", "claims"]


def _commands() -> dict[str, str]:
    found = {ep.name: ep.value for ep in entry_points(group="wse.commands")}
    return dict(sorted(found.items(), key=lambda kv: (_ORDER.index(kv[0]) if kv[0] in _ORDER else 99, kv[0])))


def json_default(obj):
    """json.dumps default for our results: NumPy scalars and arrays, paths; anything else is a bug, refused."""
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="wse",
        description="Train Cerebras-GPT models in JAX and simulate Cerebras wafer-scale execution.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name, target in _commands().items():
        module = importlib.import_module(target)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
        module.add_arguments(p)
        modules[name] = module
    parser.set_defaults(subparsers=sub.choices)
    return parser, modules


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line, letting a command's trailing positional list (``KEY=VALUE`` overrides, input files)
    continue after options: ``wse train model=tiny --json train.steps=5`` is ``train.steps=5`` too. argparse stops
    filling an ``nargs="*"`` positional at the first option, so the words it could not place are appended to it
    here; any other unknown word is refused as argparse refuses it (usage, one error line, exit status 2)."""
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    sub = args.subparsers.get(args.command) if getattr(args, "command", None) else None
    lists = [a for a in (sub._actions if sub else []) if not a.option_strings and a.nargs == "*"]
    if sub is None or len(lists) != 1 or any(word.startswith("-") for word in extra):
        (sub or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    dest = lists[0].dest
    setattr(args, dest, list(getattr(args, dest) or []) + extra)
    return args


def main(argv: list[str] | None = None) -> int:
    from runtime.errors import TrainingStopped, UserError, user_error_types
    from runtime.platform import keep_freed_memory
    from runtime.platform.environment import check_environment, environment_error

    try:
        check_environment()  # the variables the stack reads, before JAX reads its own (environment.py)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    keep_freed_memory()  # before any command starts JAX's CPU backend (runtime/platform/allocator.py says why)
    parser, modules = build_parser()
    args = parse(parser, argv)
    if not args.command:
        parser.print_help()
        return 0
    module = modules[args.command]
    try:
        result = module.run(args)
    except user_error_types() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as err:  # JAX refusing one of its environment variables is the user's too
        bad = environment_error(err)
        if bad is None:
            raise
        print(f"error: {bad}", file=sys.stderr)
        return 2
    except TrainingStopped as err:
        print(str(err), file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if args.json:
        sys.stdout.flush()
        print(json.dumps(result, default=json_default))
    elif hasattr(module, "render"):
        from rich.console import Console

        # soft_wrap: data (generated text, paths, commands to copy) is never broken into lines by the renderer, on a
        # terminal or redirected to a file (where rich would otherwise wrap at 80 columns)
        module.render(result, Console(soft_wrap=True))
    else:
        print(json.dumps(result, indent=2, default=json_default))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
