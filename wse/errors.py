"""The simulator's one exception type for user mistakes.

wse/ does not import runtime/ (dependencies point runtime -> wse), so it cannot raise runtime's UserError; the command
line gathers this type through ``runtime.errors.user_error_types`` and prints it as one ``error:`` line with exit 2.
"""

from __future__ import annotations


class PlanError(ValueError):
    """A plan that cannot be made as asked (model does not fit, unknown system, bad system file ...).

    The message is one line that names the problem and the fix. ``needed_bytes`` and ``available_bytes`` are set when
    the reason is memory, so that callers (benchmarks, tables) can report the shortfall without parsing the text.
    """

    def __init__(self, message: str, *, needed_bytes: float | None = None, available_bytes: float | None = None):
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes
