"""Prefix caching for the local engine: keys and values of finished replies, reused by prompts
that start with the same tokens.

AgentWrite's sequential prompts repeat everything before them: paragraph k's prompt is the
instruction, the plan and all text so far, which is paragraph k-1's prompt up to its text plus
one paragraph more. Prefilling that again costs more with every paragraph (a 2,000-token
prefill takes ~3 s on 2 CPU cores at any batch size). The engine stores the cache of every
reply as it ends (prompt and reply tokens), and prefills a new prompt only from where it stops
matching the longest stored one. Keys and values of a token depend only on the tokens before
it, so the result is the same as a full prefill (to float rounding: ~5e-5 on the logits).

Entries are kept in least-recently-used order within a byte budget; an entry that a newer one
extends token for token is dropped, since the newer one serves every prompt it would.

    store = PrefixStore(max_bytes=1 << 30)
    engine = Engine(model, tokenizer, batch_size=8, eos_ids=..., prefixes=store)
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass
class Prefix:
    """Token ids and their per-layer keys and values, each ``[1, kv_heads, len(ids), dim]``."""

    ids: torch.Tensor
    keys: list
    values: list

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


class PrefixStore:
    """Stored prefixes of one model, found by longest common prefix.

    Args:
        max_bytes: memory for keys and values; the least recently used go first. 0 disables.
        min_tokens: shorter matches are not worth a separate prefill.
    """

    def __init__(self, max_bytes: int = 1 << 30, min_tokens: int = 16):
        self.max_bytes, self.min_tokens = max_bytes, min_tokens
        self._entries: OrderedDict[int, Prefix] = OrderedDict()
        self._next = 0
        self.hits = self.reused_tokens = self.lookups = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def clear(self) -> None:
        """Forget every entry and reset the counters (call after changing the weights)."""
        self._entries.clear()
        self.hits = self.reused_tokens = self.lookups = 0

    def match(self, ids: list[int]) -> tuple[int, Prefix | None]:
        """The longest stored prefix of ``ids`` (at most all but its last token, which must be
        fed to get the next token's logits), as (length, entry); (0, None) if none is useful."""
        self.lookups += 1
        if not self._entries or self.max_bytes <= 0:
            return 0, None
        query = torch.tensor(ids[:-1])
        best, best_key = 0, None
        for key, entry in self._entries.items():
            n = min(len(query), len(entry.ids))
            if n <= best:
                continue
            differ = (query[:n] != entry.ids[:n]).nonzero()
            common = int(differ[0]) if len(differ) else n
            if common > best:
                best, best_key = common, key
        if best < self.min_tokens:
            return 0, None
        self._entries.move_to_end(best_key)
        self.hits += 1
        self.reused_tokens += best
        return best, self._entries[best_key]

    def add(self, ids: list[int], keys: list, values: list) -> None:
        """Store a finished sequence; ``keys``/``values`` are copied by the caller."""
        if self.max_bytes <= 0 or not ids:
            return
        entry = Prefix(torch.tensor(ids), keys, values)
        if entry.nbytes > self.max_bytes:
            return
        for key in [k for k, e in self._entries.items() if _extends(entry.ids, e.ids)]:
            del self._entries[key]
        self._entries[self._next] = entry
        self._next += 1
        total = self.nbytes
        while total > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            total -= old.nbytes

    def stats(self) -> dict:
        return {"entries": len(self), "bytes": self.nbytes, "lookups": self.lookups,
                "hits": self.hits, "reused_tokens": self.reused_tokens}


def _extends(longer: torch.Tensor, shorter: torch.Tensor) -> bool:
    return len(longer) >= len(shorter) and bool((longer[:len(shorter)] == shorter).all())
