"""The run config's ``observe`` section: where a run reports besides ``metrics.jsonl``, and which steps it profiles.

- ``tensorboard`` (default true): TensorBoard event files in ``<run dir>/tensorboard/`` (runtime.train.sinks);
- ``wandb``: ``off`` (default), ``online`` or ``offline`` (Weights & Biases' offline mode writes ``<run dir>/wandb/``
  and needs no network; ``wandb sync`` uploads it later); used only when the ``wandb`` package is installed, and
  refused with one line when it is switched on but is not (``check_observe``); ``wandb_project`` names the project;
- ``profile_steps``: ``START:END`` (or one step ``N``), a ``jax.profiler`` trace of training steps START..END
  inclusive (step numbers as in ``metrics.jsonl``, 1-based) into ``<run dir>/tensorboard/plugins/profile/``
  (runtime.train.profiling).

Everything here is written by process 0 of a multi-process run only. Pure Python: checked before JAX starts.
"""

from __future__ import annotations

from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict

from runtime.errors import UserError

WANDB_MODES = ("off", "online", "offline")


def profile_window(text: str | None) -> tuple[int, int] | None:
    """``"3:5"`` -> (3, 5); ``"4"`` -> (4, 4); None -> None. Steps are 1-based and inclusive. Raises ValueError
    (pydantic turns it into the one-line ``invalid config: observe.profile_steps: ...``) for anything else."""
    if text is None or str(text).strip() == "":
        return None
    first, sep, last = str(text).strip().partition(":")
    try:
        start, end = int(first), int(last if sep else first)
    except ValueError:
        raise ValueError("give the steps to trace as START:END, e.g. 3:5 (or one step, e.g. 4)") from None
    if start < 1 or end < start:
        raise ValueError("START:END needs 1 <= START <= END (steps are numbered from 1), e.g. 3:5")
    return start, end


class ObserveConfig(BaseModel):
    """Reporting sinks and profiling (see the module doc): ``tensorboard`` bool, ``wandb`` off|online|offline
    (``true``/``false`` mean online/off), ``wandb_project`` a name, ``profile_steps`` START:END or N or unset."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True)

    tensorboard: bool = True
    wandb: Literal["off", "online", "offline"] = "off"
    wandb_project: str = "wse-sim"
    profile_steps: str | None = None

    @pydantic.field_validator("wandb", mode="before")
    @classmethod
    def _wandb_switch(cls, value):
        if value is None or isinstance(value, bool):
            return "online" if value else "off"
        text = str(value).strip().lower()
        return {"true": "online", "on": "online", "yes": "online", "false": "off", "no": "off"}.get(text, text)

    @pydantic.field_validator("profile_steps", mode="before")
    @classmethod
    def _window(cls, value):
        window = profile_window(value)
        return None if window is None else f"{window[0]}:{window[1]}"

    def profile_window(self) -> tuple[int, int] | None:
        """(first, last) step of the profile window, inclusive; None when no profile is asked for."""
        return profile_window(self.profile_steps)


def check_observe(observe: ObserveConfig, steps: int) -> None:
    """The rules a resolved ``observe`` section keeps, against ``train.steps`` (UserError, one line): a profile
    window inside the run, and W&B switched on only where the ``wandb`` package can be imported."""
    window = observe.profile_window()
    if window is not None and window[1] > steps:
        raise UserError(f"observe.profile_steps={observe.profile_steps} ends after the run's last step "
                        f"(train.steps={steps}); trace steps inside 1..{steps}")
    if observe.wandb != "off":
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise UserError(f"observe.wandb={observe.wandb} needs the wandb package, which is not installed; "
                            "pip install wandb, or set observe.wandb=off") from None
