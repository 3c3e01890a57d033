"""The kit's one exception type: every message says what went wrong and what to do next."""


class LwError(RuntimeError):
    """A problem the user can fix (bad input, a missing file or package, an unreachable server)."""
