"""`wse claims`: four claims made about Cerebras hardware against published specs and the simulator, with verdicts.

No JAX: the figures are sourced constants (benchmarks/claims.py) and wafer-simulator plans (wse/).
"""

from __future__ import annotations

HELP = "check four claims made about Cerebras hardware (exaflop, petabyte, energy, scale-out) against specs and the simulator"


def add_arguments(parser) -> None:
    del parser  # no options: the figures and their sources are in benchmarks/claims.py


def run(args) -> dict:
    from benchmarks.claims import check_claims

    return check_claims()


def render(result: dict, console) -> None:
    from rich.table import Table

    colour = {"supported": "green", "misleading": "yellow", "unsupported": "red"}
    t = Table(title="four claims made about Cerebras hardware", show_lines=True)
    t.add_column("claim")
    t.add_column("verdict")
    t.add_column("why")
    for c in result["claims"]:
        t.add_row(c["claim"], f"[{colour[c['verdict']]}]{c['verdict']}[/]", c["reason"])
    console.print(t)
    sim = result["simulation"]
    console.print(f"simulated {sim['model']} (batch {sim['batch_size']} x {sim['seq_len']}, weight streaming): one CS-2 "
                  f"achieves {sim['cs2_achieved_flops'] / 1e15:.2f} PFLOP/s of the {sim['cs2_peak_dense_flops'] / 1e15:.2f} "
                  f"PFLOP/s dense peak of the core grid a plan can use ({sim['cs2_marketed_peak_dense_flops'] / 1e15:.2f} "
                  f"over every marketed core, as in the table); {sim['cluster']} ({sim['systems']} CS-2) {sim['cluster_achieved_flops'] / 1e15:.1f} PFLOP/s, "
                  f"{sim['cluster_days_to_train']:.1f} days to train; {sim['flop_convention']}.")
    console.print("published figures and sources: wse claims --json")
