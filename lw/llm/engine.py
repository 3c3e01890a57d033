"""Continuous batching for the local transformers backend.

``transformers``' ``generate`` runs a batch until its longest reply ends: rows that finished
early keep occupying the batch, and the next batch waits. On a CPU, where a batch of 8 decodes
~4.6x faster than one row, that idle time is most of the loss. This engine keeps up to
``batch_size`` rows decoding; a row that ends leaves the batch at once (its keys and values are
dropped from the cache) and the next waiting prompt is prefilled and joins (its cache is
left-padded to the others'). Callers can also add work as replies finish (``on_done``), which is
how AgentWrite starts an item's next paragraph the moment its previous one is written.

Sampling follows the usual order (repetition penalty on every token seen, prompt included, then
temperature, then top-p), as transformers and vLLM do it. That includes the end-of-turn token a
chat prompt holds once per message, which the penalty makes less likely: neither choice is
neutral about stopping. Exempting it (the kit's rule from 2026-11-24 to 11-25) made the token
relatively *more* likely as a reply grows, since every other token of the reply gets penalised:
SmolLM2-135M's answers to LongBench-Write prompts asking for 2,000+ words fell from 668 to 441
loop-free words at penalty 1.1. Counting it as the reference implementations do keeps lengths
comparable across backends (``engine="hf"``, vLLM, servers). Each reply samples from its own
random generator, seeded from the call's seed and the reply's key, so it does not depend on its
batch mates.

On a CPU with the kit's compiled kernel (``sampler``, ``lw.llm.cpu_kernel``), a step's draws
for rows without nucleus sampling (top_p 1) are one pass per row in C++ (``sample_step``)
instead of ~12 full-vocabulary torch operations, which at 16 rows took as long as the model's
step on 2 cores; the same arithmetic, apart from exp and the order of the softmax's sum.

With a ``PrefixStore`` (``lw.llm.prefix``), every reply's keys and values are kept as it ends
and a new prompt is prefilled only from where it stops matching a stored one: AgentWrite's next
paragraph then costs its new text, not the whole piece again.

    engine = Engine(model, tokenizer, batch_size=8)
    engine.run([Job(key=0, ids=[...], config=cfg)], on_done=lambda job, gen: [])
"""

import hashlib
import inspect
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from lw.llm.base import Generation, GenerationConfig, clock
from lw.llm.prefix import PrefixStore


@dataclass
class Job:
    """One reply to generate: prompt token ids, its settings, the key the caller knows it by
    and the name that seeds its sampling."""

    key: object
    ids: list[int]
    config: GenerationConfig
    name: str = ""


@dataclass
class _Row:
    job: Job
    start: float
    seed: int
    new: list[int] = field(default_factory=list)


def supported(model) -> bool:
    """True when the model's cache is the plain per-layer kind this engine can edit."""
    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # an exotic config: let transformers' own generate handle it
        return False
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


class Engine:
    """Decodes many jobs with continuous batching (see the module docstring).

    Args:
        model, tokenizer: a loaded transformers causal LM and its tokenizer.
        batch_size: rows decoding at once.
        eos_ids: token ids that end a reply.
        prefixes: where finished replies' caches are kept for reuse; None keeps none.
        sampler: the compiled kernel (``lw.llm.cpu_kernel.load``) to draw with on a CPU, or
            None (torch's operations; see ``sample``).
    """

    def __init__(self, model, tokenizer, batch_size: int, eos_ids: set[int],
                 prefixes: PrefixStore | None = None, sampler=None):
        self.model, self.tokenizer, self.prefixes = model, tokenizer, prefixes
        self.sampler = sampler
        self.batch_size = max(1, batch_size)
        self.eos_ids = sorted(eos_ids)
        self.pad = tokenizer.pad_token_id
        self.device = next(model.parameters()).device
        # transformers 5.x renamed forward's `past_key_values` to `cache`; accept both.
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def run(self, jobs: Iterable[Job], on_done: Callable[[Job, Generation], Iterable[Job] | None],
            errors: str = "raise", bar=None) -> None:
        """Generate every job, calling ``on_done(job, generation)`` as each ends; the jobs it
        returns join the queue. With errors="return", a failed forward pass ends the rows it
        carried with finish_reason "error" and the queue goes on."""
        with torch.inference_mode():
            self._run(deque(jobs), on_done, errors, bar)

    def _run(self, queue: deque, on_done, errors: str, bar) -> None:
        rows: list[_Row] = []
        state = None  # (cache, mask, logits, seen) for the rows, in row order
        while queue or rows:
            try:
                if queue and len(rows) < self.batch_size:
                    new = [queue.popleft() for _ in range(min(len(queue),
                                                              self.batch_size - len(rows)))]
                    state = self._admit(rows, new, state)
                tokens = self._sample(rows, state)
                ended = self._advance(rows, tokens)
            except Exception as exc:
                if errors == "raise":
                    raise
                failed, rows, state = rows, [], None
                for row in failed:
                    gen = Generation("", len(row.job.ids), len(row.new), "error",
                                     clock() - row.start, error=repr(exc))
                    queue.extend(on_done(row.job, gen) or ())
                    if bar is not None:
                        bar.update(1)
                continue
            keep = [i for i in range(len(rows)) if i not in ended]
            for i, gen in ended.items():
                self._store(rows[i], i, state)
                queue.extend(on_done(rows[i].job, gen) or ())
                if bar is not None:
                    bar.update(1)
            rows = [rows[i] for i in keep]
            state = self._step(rows, tokens, keep, state) if rows else None

    # -- the cache: admit, step, drop ------------------------------------------------------
    def _admit(self, rows, new: list[Job], state):
        """Prefill ``new`` and merge it into the running batch (left padding). Prompts of equal
        length are prefilled together and without a mask, which lets SDPA use its causal
        kernel: a padded batch with a mask was ~1.3x slower per token on 2 CPU cores."""
        by_length: dict[int, list[Job]] = {}
        groups = []  # (jobs, cache, tokens already cached)
        for j in new:
            n, prefix = self.prefixes.match(j.ids) if self.prefixes is not None else (0, None)
            if prefix is None:
                by_length.setdefault(len(j.ids), []).append(j)
            else:
                groups.append(([j], _cache(self.model.config, prefix, n), n))
        groups += [(group, _cache(self.model.config), 0) for group in by_length.values()]
        parts = [] if state is None else [state]
        now = clock()
        for group, cache, cached in groups:
            length = len(group[0].ids)
            ids = torch.tensor([j.ids for j in group], device=self.device)
            out = self.model(input_ids=ids[:, cached:], use_cache=True, logits_to_keep=1,
                             **{self.cache_arg: cache})
            logits = out.logits[:, -1, :].float()
            seen = torch.zeros_like(logits, dtype=torch.bool)
            seen.scatter_(1, ids.clamp(max=logits.shape[-1] - 1), True)
            mask = torch.ones(len(group), length, dtype=torch.long, device=self.device)
            parts.append((cache, mask, logits, seen))
            rows.extend(_Row(j, now, row_seed(j)) for j in group)
        return parts[0] if len(parts) == 1 else _merge(self.model.config, parts)

    def _store(self, row: _Row, i: int, state) -> None:
        """Keep row ``i``'s keys and values (prompt and reply, right-aligned in the batch) for
        later prompts that start the same way."""
        if self.prefixes is None or self.prefixes.max_bytes <= 0:
            return
        ids = row.job.ids + row.new[:-1]  # the last sampled token was never fed
        layers = state[0].layers
        self.prefixes.add(ids, [layer.keys[i:i + 1, :, -len(ids):].clone() for layer in layers],
                          [layer.values[i:i + 1, :, -len(ids):].clone() for layer in layers])

    def _step(self, rows, tokens, keep: list[int], state):
        """Drop ended rows, then run one decoding step for the rest."""
        cache, mask, _, seen = state
        if len(keep) < mask.shape[0]:
            index = torch.tensor(keep, device=self.device)
            for layer in cache.layers:
                layer.batch_select_indices(index)
            mask, seen, tokens = mask[index], seen[index], tokens[index]
            first = int(mask.any(0).nonzero()[0])  # columns padded in every row are dead weight
            if first:
                for layer in cache.layers:
                    layer.drop_left(first)
                mask = mask[:, first:]
        mask = torch.cat([mask, torch.ones(len(keep), 1, dtype=mask.dtype, device=self.device)], 1)
        out = self.model(input_ids=tokens[:, None], attention_mask=mask,
                         position_ids=_positions(mask)[:, -1:], use_cache=True,
                         **{self.cache_arg: cache})
        return cache, mask, out.logits[:, -1, :].float(), seen

    # -- sampling --------------------------------------------------------------------------
    def _sample(self, rows, state):
        """One token per row from its logits (repetition penalty, temperature, top-p)."""
        _, _, logits, seen = state
        return sample(logits, seen, rows, self.eos_ids, kernel=self.sampler)

    def _advance(self, rows, tokens) -> dict[int, Generation]:
        """Append each row's token; the rows that ended, with their replies."""
        ended = {}
        eos = set(self.eos_ids)
        for k, (row, t) in enumerate(zip(rows, tokens.tolist(), strict=True)):
            row.new.append(t)
            cfg = row.job.config
            if t in eos:
                text = self.tokenizer.decode(row.new[:-1], skip_special_tokens=True)
                ended[k] = Generation(text, len(row.job.ids), len(row.new), "stop",
                                      clock() - row.start)
            elif cfg.stop and (hit := self._stopped(row.new, cfg.stop)) is not None:
                ended[k] = Generation(hit, len(row.job.ids), len(row.new), "stop",
                                      clock() - row.start)
            elif len(row.new) >= cfg.max_new_tokens:
                text = self.tokenizer.decode(row.new, skip_special_tokens=True)
                ended[k] = Generation(text, len(row.job.ids), len(row.new), "length",
                                      clock() - row.start)
        return ended

    def _stopped(self, new: list[int], stops) -> str | None:
        """The reply cut before its first stop string, once one has appeared; else None."""
        tail = self.tokenizer.decode(new[-(max(map(len, stops)) + 8):], skip_special_tokens=True)
        if not any(s in tail for s in stops):
            return None
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return text[:min(text.find(s) for s in stops if s in text)]


class _GrowingLayer(DynamicLayer):
    """A cache layer that writes new keys and values into spare room instead of copying the
    whole cache every step (transformers' DynamicLayer concatenates: at 8 rows of ~1,200
    tokens that copy took a third of each decoding step on 2 CPU cores). Room doubles when
    full; ``keys``/``values`` are views of the filled part."""

    def update(self, key_states, value_states, *args, **kwargs):
        n, new = self.get_seq_length(), key_states.shape[-2]
        if not self.is_initialized or n + new > self._room.shape[-2]:
            self._grow(key_states, n, max(2 * n, n + new) + 64)
        self._room[..., n:n + new, :] = key_states
        self._room_v[..., n:n + new, :] = value_states
        self.keys, self.values = self._room[..., :n + new, :], self._room_v[..., :n + new, :]
        return self.keys, self.values

    def _grow(self, like, n: int, size: int) -> None:
        room = like.new_zeros((*like.shape[:2], size, like.shape[-1]))
        room_v = torch.zeros_like(room)
        if self.is_initialized and n:
            room[..., :n, :], room_v[..., :n, :] = self.keys, self.values
        self.device, self.is_initialized = like.device, True
        self._room, self._room_v = room, room_v
        self.keys, self.values = room[..., :n, :], room_v[..., :n, :]

    def batch_select_indices(self, indices) -> None:
        n = self.get_seq_length()
        self._room, self._room_v = self._room[indices], self._room_v[indices]
        self.keys, self.values = self._room[..., :n, :], self._room_v[..., :n, :]

    def drop_left(self, k: int) -> None:
        """Forget the first ``k`` positions (padding no row still needs)."""
        n = self.get_seq_length()
        self._room, self._room_v = self._room[..., k:, :], self._room_v[..., k:, :]
        self.keys, self.values = self._room[..., :n - k, :], self._room_v[..., :n - k, :]


def _merge(config, parts):
    """One batch state from several: caches and masks left-padded to the longest, stacked."""
    total = max(mask.shape[1] for _, mask, _, _ in parts)
    merged = _cache(config)
    for i, layer in enumerate(merged.layers):
        layer.update(torch.cat([_left_pad(c.layers[i].keys, total) for c, _, _, _ in parts]),
                     torch.cat([_left_pad(c.layers[i].values, total) for c, _, _, _ in parts]))
    return (merged, torch.cat([_left_pad(m, total, dim=1) for _, m, _, _ in parts]),
            torch.cat([p[2] for p in parts]), torch.cat([p[3] for p in parts]))


def _cache(config, prefix=None, n: int = 0):
    """A cache of growing layers for ``config``'s model: empty, or holding the first ``n``
    positions of a stored ``prefix`` (copied: the store's tensors are never written to)."""
    cache = DynamicCache(config=config)
    cache.layers = [_GrowingLayer() for _ in cache.layers]
    if prefix is not None:
        for layer, k, v in zip(cache.layers, prefix.keys, prefix.values, strict=True):
            layer.update(k[..., :n, :], v[..., :n, :])
    return cache


def _positions(mask):
    """Position ids that start at 0 on each row's first real token (left padding)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _left_pad(x, total: int, dim: int = -2):
    """Zero-pad ``x`` on the left of ``dim`` to length ``total``."""
    missing = total - x.shape[dim]
    if missing <= 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([torch.zeros(shape, dtype=x.dtype, device=x.device), x], dim=dim)


def row_seed(job: Job) -> int:
    """The seed of one reply's draws: the call's seed mixed with the reply's name, so a reply
    samples the same whatever its batch mates."""
    seed = job.config.seed
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    digest = hashlib.sha256(f"{seed}/{job.name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def sample(logits, seen, rows, eos_ids, index=None, kernel=None):
    """One token per row (repetition penalty, temperature, top-p), in a fixed number of
    kernels whatever the batch: on a GPU a decode step is bound by launches, and the earlier
    per-row draws (one generator call per row) cost as much as the model's step at batch 64.

    Args:
        logits: ``[n, vocab]`` float logits of ``rows``, in order.
        seen: ``[N, vocab]`` bool, the tokens each row has seen; row k's is ``seen[index[k]]``
            (``index`` None: ``seen[k]``). The drawn tokens are marked in it.
        rows: objects with ``.job.config``, ``.seed`` and ``.new`` (the tokens so far).
        eos_ids: tokens a reply may not end with before its ``min_new_tokens``.
        kernel: the compiled module (``lw.llm.cpu_kernel``): CPU logits of rows that all have
            top_p 1 are drawn by its ``sample_step`` (module docstring).
    Returns:
        ``[n]`` long tensor of tokens on the logits' device.
    """
    device = logits.device
    cfgs = [r.job.config for r in rows]
    if (kernel is not None and device.type == "cpu" and all(c.top_p >= 1 for c in cfgs)
            and logits.dtype == torch.float32):
        return _sample_compiled(kernel, logits, seen, rows, cfgs, eos_ids, index)
    where = slice(None) if index is None else index
    penalties = [c.repetition_penalty for c in cfgs]
    if any(p != 1 for p in penalties):  # as in CTRL (Keskar et al. 2019): shrink seen scores
        penalty = torch.tensor(penalties, device=device)[:, None]
        logits = torch.where(seen[where], torch.where(logits > 0, logits / penalty,
                                                      logits * penalty), logits)
    short = [len(r.new) < c.min_new_tokens for r, c in zip(rows, cfgs, strict=True)]
    if any(short):
        blocked = torch.tensor(short, device=device)[:, None]
        eos = torch.tensor(eos_ids, device=device)
        logits[:, eos] = torch.where(blocked, float("-inf"), logits[:, eos])
    tokens = logits.argmax(-1)
    temps = [c.temperature for c in cfgs]
    if any(t > 0 for t in temps):
        hot = torch.tensor([t > 0 for t in temps], device=device)
        temp = torch.tensor([t if t > 0 else 1.0 for t in temps], device=device)[:, None]
        probs = torch.softmax(logits / temp, -1)
        top_ps = [c.top_p for c in cfgs]
        if any(p < 1 for p in top_ps):  # nucleus: keep the smallest set reaching top_p
            top_p = torch.tensor(top_ps, device=device)[:, None]
            sorted_p, order = probs.sort(-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p >= top_p
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(drop, 0))
        # Inverse-CDF draw with one uniform per row from a counter-based generator (the row's
        # seed and its token count): the same distribution as torch.multinomial, which took
        # ~4 ms a row on a 49k vocabulary, and the same draws on every device and batch.
        cdf = probs.cumsum(-1)
        seeds = torch.tensor([r.seed for r in rows], device=device)
        counts = torch.tensor([len(r.new) for r in rows], device=device)
        u = (uniforms(seeds, counts) * cdf[:, -1].double()).to(cdf.dtype)[:, None]
        drawn = torch.searchsorted(cdf, u, right=True).clamp(max=probs.shape[-1] - 1)[:, 0]
        tokens = torch.where(hot, drawn, tokens)
    if index is None:
        seen[torch.arange(len(rows), device=device), tokens] = True
    else:
        seen[index, tokens] = True
    return tokens


def _sample_compiled(kernel, logits, seen, rows, cfgs, eos_ids, index):
    """``sample`` through ``kernel.sample_step``: the same settings and uniforms."""
    n = len(rows)
    where = torch.arange(n) if index is None else index
    seeds = torch.tensor([r.seed for r in rows])
    counts = torch.tensor([len(r.new) for r in rows])
    tokens = kernel.sample_step(
        logits.contiguous(), seen, where,
        torch.tensor([c.repetition_penalty for c in cfgs], dtype=torch.float32),
        torch.tensor([max(c.temperature, 0.0) for c in cfgs], dtype=torch.float32),
        torch.tensor([len(r.new) < c.min_new_tokens for r, c in zip(rows, cfgs, strict=True)]),
        torch.tensor(list(eos_ids), dtype=torch.long), uniforms(seeds, counts))
    seen[where, tokens] = True
    return tokens


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN, _MIX1, _MIX2 = map(_signed, (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9,
                                      0x94D049BB133111EB))


def uniforms(seeds, counts):
    """Uniform floats in [0, 1) from int64 ``seeds`` and ``counts``: SplitMix64 (Steele, Lea
    and Flood 2014) of seed + (count + 1) * golden ratio. int64 arithmetic wraps like uint64;
    right shifts are masked to act as logical ones."""
    x = seeds + (counts + 1) * _GOLDEN
    x = (x ^ _lsr(x, 30)) * _MIX1
    x = (x ^ _lsr(x, 27)) * _MIX2
    x = x ^ _lsr(x, 31)
    return _lsr(x, 11).double() / float(1 << 53)


def _lsr(x, k: int):
    return (x >> k) & ((1 << (64 - k)) - 1)
