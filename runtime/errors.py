"""The one exception type for user mistakes in runtime/, and the tuple the command line turns into `error:` lines.

A user mistake (bad config key, mesh that does not match the devices, corrupt checkpoint, empty corpus ...) must
reach the user as one line that names the problem and the fix, never as a traceback. model/ and wse/ raise their own
ValueError subclasses (they do not import runtime/); this module gathers them.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the user asked for; the message is one line naming the problem and the fix."""


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
