"""`wse info`: the shape, parameter count and FLOP budget of a model, from its config alone (no JAX)."""

from __future__ import annotations

HELP = "show a model's shape, parameters, FLOPs per token and Chinchilla budget"


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="preset name (tiny, small, 111M ... 13B, 111M-mup ...) or a YAML/JSON model file")


def run(args) -> dict:
    from model.config import get_config

    return get_config(args.model).summary()


def render(result: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"model {result['name']}", show_header=False)
    for key, value in result.items():
        table.add_row(key, f"{value:,.4g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    console.print(table)
