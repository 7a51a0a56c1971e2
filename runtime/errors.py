"""The one exception type for user mistakes in runtime/, and the tuple the command line turns into `error:` lines.

A user mistake (bad config key, mesh that does not match the devices, corrupt checkpoint, empty corpus ...) must
reach the user as one line that names the problem and the fix, never as a traceback. model/ and wse/ raise their own
ValueError subclasses (they do not import runtime/); this module gathers them.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the user asked for; the message is one line naming the problem and the fix."""


class Diverged(UserError):
    """Training produced a NaN or an infinity (loss, gradient norm, or weights about to be saved) at ``step``; nothing
    of that step was saved. ``checkpoint``: the step of the last checkpoint (all finite), or None when there is
    none; ``lr``: a learning rate to continue with; ``delete``/``new_run_dir``: a checkpoint to delete first, or a new
    run dir, when resuming the last checkpoint would diverge again. The message says all of it; `wse train` and
    `wse finetune` add the command that continues (runtime.train.divergence.continue_command)."""

    def __init__(self, message: str, *, step: int, checkpoint: int | None, lr: float | None = None,
                 detail: str | None = None, delete: str | None = None, new_run_dir: str | None = None):
        super().__init__(message)
        self.step, self.checkpoint, self.lr = step, checkpoint, lr  # lr: the learning rate to suggest
        self.detail = detail or message  # what was not finite
        # how to continue (runtime.train.divergence): delete a checkpoint first, or start in a new run dir
        self.delete, self.new_run_dir = delete, new_run_dir


class TrainingStopped(Exception):
    """A run stopped by a signal (SIGTERM: a scheduler preempting it; SIGINT: Ctrl-C) after it saved a checkpoint.
    The message is one line saying which step was saved where; ``exit_status`` is 128 + the signal number (143, 130),
    the shell's convention for "ended by that signal", so schedulers and scripts see the run as not finished."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception type that means 'the user asked for something wrong' (imported lazily: no JAX)."""
    from model.config import ModelConfigError
    from model.tokenizer import TokenizerError

    types: list[type[BaseException]] = [UserError, ModelConfigError, TokenizerError]
    try:
        from wse.errors import PlanError

        types.append(PlanError)
    except ImportError:  # the simulator package is optional for the commands that do not plan
        pass
    return tuple(types)
