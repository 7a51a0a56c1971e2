"""Remat (rematerialisation, activation checkpointing): the one vocabulary of the knob, without JAX.

The policies for the blocks' backward pass, cheapest first in compute and dearest in memory (MaxText's
``remat_policy``, in JAX's checkpoint-policy terms; model.gpt.rematerialised applies them):

- ``none``: keep every activation the backward pass needs;
- ``dots``: keep the outputs of the weight matmuls (Q/K/V, attention output projection, the FFN matmuls), recompute
  the rest (norms, activations, RoPE, attention): ``jax.checkpoint_policies.dots_with_no_batch_dims_saveable``;
- ``full``: keep only each block's input and recompute the whole block (one more forward pass, ~1/3 more FLOPs).

A run asks for one of ``REMAT_CHOICES``: a policy, or ``auto`` (the plan takes the cheapest policy whose predicted
memory fits a device: runtime/execution/placement.py, from the device cost model's memory model). ``remat_choice`` is
the only place a spelling is turned into a choice: the run config's schema (runtime/config/schema.py), the executor
(runtime.execution.build_executor) and the model (model.gpt) all call it.
"""

from __future__ import annotations

REMAT_POLICIES = ("none", "dots", "full")
REMAT_CHOICES = ("auto",) + REMAT_POLICIES
# Spellings of the choices kept from before there were three policies (a bool: recompute or not; YAML's words for one).
_ALIASES = {True: "full", False: "none", None: "auto", "true": "full", "on": "full", "yes": "full", "false": "none",
            "off": "none", "no": "none"}


def remat_choice(value) -> str:
    """One of REMAT_CHOICES from a choice's name, or the older spellings: a bool (True = full, False = none), None
    (auto), and YAML's true/false, on/off, yes/no. Raises ValueError naming the choices."""
    if isinstance(value, str):
        value = value.strip().lower()
        value = _ALIASES.get(value, value)
    elif value is None or isinstance(value, bool):
        value = _ALIASES[value]
    if value not in REMAT_CHOICES:
        raise ValueError(f"unknown remat policy {value!r}; use one of {', '.join(REMAT_CHOICES)} "
                         "(or true = full, false = none)")
    return value


def remat_policy(value) -> str:
    """One of REMAT_POLICIES (remat_choice without ``auto``, which only a plan can turn into a policy). Raises
    ValueError."""
    choice = remat_choice(value)
    if choice == "auto":
        raise ValueError(f"remat 'auto' is decided by a plan; give one of {', '.join(REMAT_POLICIES)}")
    return choice
