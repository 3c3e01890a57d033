"""Why a reply failed, in a form callers can act on: two kinds, one rule for every long run.

A backend asked with ``errors="return"`` hands back a failed reply as a ``Generation`` with
``finish_reason == "error"``; the OpenAI-compatible backend also says which kind of failure it
was in ``extra["error_kind"]``:

- ``TRANSPORT``: no answer came back (connection refused or dropped, timeouts, 5xx, 429) after
  the backend's own retries. The same request may well succeed later, so ``predict`` (and
  ``write_direct`` over it), the judge and AgentWrite keep such an item pending: nothing is
  stored for it, and a plain rerun with the same path asks it again.
- ``REQUEST``: the server answered that the request itself is wrong (400/422: a prompt longer
  than the model's context, a setting it refuses), or a local backend failed on it. Asking again
  unchanged fails again, so the item is stored (AgentWrite) or returned (``predict`` and
  ``write_direct`` over it, the judge) with advice on what to change, never "rerun to retry".

A failure that carries no mark (local backends, the scripted fake's plain exceptions) counts as
``REQUEST``, unless its text is the OpenAI-compatible backend's "gave up after N attempts", as
in an error text read back from a file.
"""

import re

TRANSPORT = "transport"
REQUEST = "request"
KINDS = (TRANSPORT, REQUEST)

# What the OpenAI-compatible backend writes when its retries are spent (lw.llm.openai_compat).
_GAVE_UP = re.compile(r"gave up after \d+ attempts?\b")

TRANSPORT_ADVICE = ("no answer came back (server unreachable, timeouts, or 5xx/429 past the "
                    "client's retries); nothing finished is lost: once the server answers, "
                    "rerun with the same path and only these are asked again")
REQUEST_ADVICE = ("the server refused the request itself (a 4xx answer such as 400/422), so "
                  "asking again unchanged fails the same way: shorten the prompt, lower "
                  "max_new_tokens, or load a model with a longer context (or drop the setting "
                  "the error names)")


def failure_kind(failure) -> str:
    """``TRANSPORT`` or ``REQUEST`` for a failed ``Generation``, or for its error text."""
    extra = getattr(failure, "extra", None)
    if isinstance(extra, dict) and extra.get("error_kind") in KINDS:
        return extra["error_kind"]
    text = getattr(failure, "error", failure)
    return TRANSPORT if isinstance(text, str) and _GAVE_UP.search(text) else REQUEST


def stored_kind(record: dict) -> str:
    """The kind of a stored failure record: its ``error_kind`` where it has one, else read from
    its ``error`` text (records stored before kinds existed)."""
    kind = record.get("error_kind")
    return kind if kind in KINDS else failure_kind(str(record.get("error") or ""))


def warn_undone(who: str, n: int, spec: str, pending: list, failed: list, stored: list,
                retry: str, stacklevel: int = 3) -> None:
    """The warnings a long run ends with, one rule for every stage: ``pending`` (errors of items
    that got no answer: a plain rerun asks them), ``failed`` (errors this run stored) and
    ``stored`` (errors an earlier run stored, returned without asking); ``retry`` names the
    call that asks stored failures again."""
    import warnings

    if pending:
        warnings.warn(f"{who}: {len(pending)} of {n} items got no answer from {spec} (last "
                      f"error: {str(pending[-1])[:300]}); they are pending, not stored as "
                      f"failed: {TRANSPORT_ADVICE}.", stacklevel=stacklevel)
    if failed:
        warnings.warn(f"{who}: {len(failed)} of {n} items failed and are stored as failed "
                      f"(last error: {str(failed[-1])[:500]}); {retry} asks them again.",
                      stacklevel=stacklevel)
    if stored:
        warnings.warn(f"{who}: {len(stored)} of {n} items are failures stored by an earlier "
                      f"run, returned without asking again (last error: {str(stored[-1])[:500]}"
                      f"); {retry} asks them again.", stacklevel=stacklevel)

