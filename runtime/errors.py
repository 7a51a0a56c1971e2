"""The one exception type for user mistakes in runtime/, and the tuple the command line turns into `error:` lines.

A user mistake (bad config key, mesh that does not match the devices, corrupt checkpoint, empty corpus ...) must
reach the user as one line that names the problem and the fix, never as a traceback. model/ and wse/ raise their own
ValueError subclasses (they do not import runtime/); this module gathers them.
"""

from __future__ import annotations

import errno


class UserError(ValueError):
    """A mistake in what the user asked for; the message is one line naming the problem and the fix."""


class TrainingDiverged(UserError):
    """Training reached a non-finite loss at ``step`` (the message says so and how to recover). For `wse train` it is
    a user error like any other; a learning-rate sweep (`wse study mup`) records it as that point's outcome."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


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


def disk_full(err: BaseException) -> bool:
    """Whether an exception (or one it was raised from) says the disk is full: ENOSPC from the OS, or TensorStore's
    RESOURCE_EXHAUSTED "No space left on device" as Orbax re-raises it."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        if "no space left on device" in str(err).lower():
            return True
        err = err.__cause__ or err.__context__
    return False
