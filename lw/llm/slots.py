"""The local engine's GPU path: a static cache of fixed slots, decode steps replayed as CUDA graphs.

On a GPU a small model's decode step is bound by kernel launches, not arithmetic: on one H200 an
eager step of the 135M shape took ~80 ms at batch 1 and at batch 64 alike (~1,000 launches from
Python), so batch 64 gave ~945 tokens/s. A CUDA graph replays the whole step as one launch, but
only if every tensor it touches keeps its address and shape. So this engine keeps:

- keys and values of all layers in two buffers ``[layers, slots, kv_heads, columns, dim]``;
  a row owns one slot, its tokens right-aligned so that every row writes the same column ``c``
  at each step (the column index is a device tensor the graph reads);
- a bool mask ``[slots, columns]`` of the columns each row attends to, position ids, the input
  tokens and the output logits in fixed buffers.

A step is captured once per (slot bucket, column bucket): the powers of two that cover the
highest live slot and column ``c``, so attention reads only the filled part of the cache. When
``c`` reaches the end of the buffer, columns no live row uses are dropped (a shift left); when
every column is in use the buffer doubles and the graphs are captured again.

New rows are prefilled in one padded forward (not one per prompt length: on a GPU each forward
costs a step's launches whatever its size), including prompts that continue a stored prefix
(``lw.llm.prefix``): their cached part is copied in and only the rest is computed. Rows are
admitted in groups (a quarter of the slots by default) rather than one by one for the same reason.
Sampling is ``lw.llm.engine.sample``: the same settings, seeds and draws as the CPU engine.

    engine = SlotEngine(model, tokenizer, batch_size=64, eos_ids={2}, graphs=True)
    engine.run(jobs, on_done)  # as lw.llm.engine.Engine
"""

from collections import deque

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from lw.errors import LwError
from lw.llm.base import Generation, clock
from lw.llm.engine import Engine, Job, _Row, row_seed, sample

MIN_COLUMNS = 256
PREFILL_TOKENS = 32768  # padded tokens per prefill forward (bounds its activations)


class _SlotLayer(DynamicLayer):
    """One layer's keys and values as views of the static buffers; ``update`` writes the new
    keys at the columns in ``cols`` (a device tensor) and returns the whole view."""

    def __init__(self, keys, values, cols):
        super().__init__()
        self.keys, self.values, self.cols = keys, values, cols
        self.is_initialized, self.device = True, keys.device

    def update(self, key_states, value_states, *args, **kwargs):
        self.keys.index_copy_(2, self.cols, key_states)
        self.values.index_copy_(2, self.cols, value_states)
        return self.keys, self.values


class SlotEngine(Engine):
    """Continuous batching over a static cache, decode steps as CUDA graphs (module docstring).

    Args:
        model, tokenizer, batch_size, eos_ids, prefixes: as ``Engine``; ``batch_size`` slots.
        graphs: capture decode steps as CUDA graphs (needs CUDA); False runs the same steps
            eagerly (the reference the graph path is tested against, and CPU tests).
        admit_min: free slots that must gather before waiting prompts are prefilled, unless the
            queue is shorter or no row is running (default a quarter of the slots).
        memory_fraction: share of the free GPU memory the cache may take when it grows.
    """

    def __init__(self, model, tokenizer, batch_size: int, eos_ids: set[int], prefixes=None,
                 graphs: bool = True, admit_min: int | None = None, memory_fraction: float = 0.6):
        super().__init__(model, tokenizer, batch_size, eos_ids, prefixes)
        if graphs and self.device.type != "cuda":
            raise LwError(f"CUDA graphs need a CUDA device; this model is on {self.device}. "
                          "Load it with cuda_graphs=False (or on a GPU).")
        self.graphs, self.memory_fraction = graphs, memory_fraction
        self.admit_min = admit_min or max(1, self.batch_size // 4)
        config = model.config.get_text_config(decoder=True)
        self.n_layers = len(DynamicCache(config=model.config).layers)
        self.kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // config.num_attention_heads)
        self.dtype = next(model.parameters()).dtype
        self.vocab = model.get_output_embeddings().weight.shape[0]
        self.columns = 0  # buffer width; allocated on first use
        self.c = 0  # the column the next decode step writes
        self._graphs: dict = {}
        self.captures = 0
        b, dev = self.batch_size, self.device
        self.col = torch.zeros(1, dtype=torch.long, device=dev)
        self.ids = torch.zeros(b, 1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(b, 1, dtype=torch.long, device=dev)
        self.logits = torch.zeros(b, self.vocab, dtype=torch.float32, device=dev)
        self.seen = torch.zeros(b, self.vocab, dtype=torch.bool, device=dev)

    @property
    def bytes_per_column(self) -> int:
        """Cache bytes one slot needs per column (keys and values of every layer)."""
        return 2 * self.n_layers * self.kv_heads * self.head_dim * self.dtype.itemsize

    # -- the loop --------------------------------------------------------------------------
    def _run(self, queue: deque, on_done, errors: str, bar) -> None:
        rows: dict[int, _Row] = {}  # slot -> row
        while queue or rows:
            try:
                free = [s for s in range(self.batch_size) if s not in rows]
                if queue and free and (not rows or len(free) >= min(len(queue), self.admit_min)):
                    new = [queue.popleft() for _ in range(min(len(queue), len(free)))]
                    self._admit(rows, new, free)
                slots = sorted(rows)
                index = torch.tensor(slots, device=self.device)
                live = [rows[s] for s in slots]
                tokens = sample(self.logits[index], self.seen, live, self.eos_ids, index)
                ended = self._advance(live, tokens)
            except Exception as exc:
                if errors == "raise":
                    raise
                for row in rows.values():
                    gen = Generation("", len(row.job.ids), len(row.new), "error",
                                     clock() - row.start, error=repr(exc))
                    queue.extend(on_done(row.job, gen) or ())
                    if bar is not None:
                        bar.update(1)
                rows = {}
                continue
            for k, gen in ended.items():
                self._keep(live[k], slots[k])
                del rows[slots[k]]
                queue.extend(on_done(live[k].job, gen) or ())
                if bar is not None:
                    bar.update(1)
            if rows:
                kept = [k for k in range(len(slots)) if k not in ended]
                self.ids.view(-1).index_copy_(0, index[kept], tokens[kept])
                self._decode(rows)

    # -- admitting rows --------------------------------------------------------------------
    def _admit(self, rows: dict, new: list[Job], free: list[int]) -> None:
        """Prefill ``new`` (continuing stored prefixes where they match) and place each in a
        free slot, right-aligned to end at column ``c``."""
        matched = [(j, *self._match(j)) for j in new]
        matched.sort(key=lambda m: len(m[0].ids))
        groups, group = [], []
        for m in matched:  # bound each forward's padded tokens
            width = len(m[0].ids)
            if group and (len(group) + 1) * width > PREFILL_TOKENS:
                groups.append(group)
                group = []
            group.append(m)
        groups.append(group)
        self._room(need_left=max(len(m[0].ids) for m in matched), rows=rows)
        now = clock()
        for group in groups:
            slots = [free.pop(0) for _ in group]
            self._prefill(group, slots)
            for (job, _, _), s in zip(group, slots, strict=True):
                rows[s] = _Row(job, now, row_seed(job))

    def _match(self, job: Job):
        if self.prefixes is None:
            return 0, None
        return self.prefixes.match(job.ids)

    def _prefill(self, group, slots: list[int]) -> None:
        """One forward over ``group``'s prompts, right-aligned to width ``T``: the cache holds
        the first ``T - M`` columns (stored prefixes, copied in), the forward computes the
        last ``M`` (every row's uncached tokens, and for rows whose cached part is longer,
        a few cached tokens again)."""
        dev, b = self.device, len(group)
        lengths = [len(j.ids) for j, _, _ in group]
        width = max(lengths)
        fresh = max(len(j.ids) - n for j, n, _ in group)  # M: columns computed
        held = width - fresh
        shape = (self.n_layers, b, self.kv_heads, width, self.head_dim)
        keys = torch.zeros(shape, dtype=self.dtype, device=dev)
        values = torch.zeros(shape, dtype=self.dtype, device=dev)
        for r, (job, _, prefix) in enumerate(group):
            take = len(job.ids) - fresh  # this row's columns before the computed block
            if take > 0:
                start = width - len(job.ids)
                keys[:, r, :, start:held] = torch.stack(prefix.keys)[:, 0, :, :take]
                values[:, r, :, start:held] = torch.stack(prefix.values)[:, 0, :, :take]
        pad = self.pad if self.pad is not None else 0
        ids = torch.tensor([[pad] * (width - len(j.ids)) + j.ids for j, _, _ in group],
                           device=dev)
        starts = torch.tensor([width - n for n in lengths], device=dev)[:, None]
        cols = torch.arange(width, device=dev)
        attend = cols[None, :] >= starts  # [b, T]: the row's own columns
        query = cols[held:]
        mask = attend[:, None, None, :] & (cols[None, :] <= query[:, None])[None, None]
        mask |= (cols[None, :] == query[:, None])[None, None]  # padding sees itself: no NaN
        positions = (cols[None, held:] - starts).clamp(min=0)
        cache = self._view_cache(keys, values, query)
        out = self.model(input_ids=ids[:, held:], attention_mask=mask, position_ids=positions,
                         use_cache=True, logits_to_keep=1, **{self.cache_arg: cache})
        index = torch.tensor(slots, device=dev)
        span = slice(self.c - width, self.c)
        self.keys[:, :, :, span].index_copy_(1, index, keys)
        self.values[:, :, :, span].index_copy_(1, index, values)
        self.mask[index] = False
        self.mask[:, span].index_copy_(0, index, attend)
        self.pos.view(-1).index_copy_(0, index, torch.tensor(lengths, device=dev))
        self.logits.index_copy_(0, index, out.logits[:, -1, :].float())
        seen = torch.zeros(b, self.vocab, dtype=torch.bool, device=dev)
        seen.scatter_(1, ids.clamp(max=self.vocab - 1), True)
        seen[:, pad] = False
        for r, j in enumerate(job for job, _, _ in group):
            if pad in j.ids:
                seen[r, pad] = True
        self.seen.index_copy_(0, index, seen)

    def _keep(self, row: _Row, slot: int) -> None:
        """Store an ended row's keys and values (prompt and reply) for later prompts."""
        if self.prefixes is None or self.prefixes.max_bytes <= 0:
            return
        ids = row.job.ids + row.new[:-1]  # the last sampled token was never fed
        span = slice(self.c - len(ids), self.c)
        keys = self.keys[:, slot:slot + 1, :, span].clone()
        values = self.values[:, slot:slot + 1, :, span].clone()
        self.prefixes.add(ids, list(keys.unbind(0)), list(values.unbind(0)))

    # -- the static buffers ----------------------------------------------------------------
    def _room(self, need_left: int, rows: dict, need_right: int = 1) -> None:
        """Make ``c >= need_left`` and ``c + need_right <= columns``, moving the live columns
        (the last ``used`` before ``c``) or growing the buffers."""
        used = max((len(r.job.ids) + len(r.new) - 1 for r in rows.values()), default=0)
        if self.columns and need_left <= self.c and self.c + need_right <= self.columns:
            return
        target = max(need_left, used)
        if target + need_right > self.columns:
            self._grow(max(MIN_COLUMNS, 2 * self.columns,
                           1 << (target + need_right - 1).bit_length()))
        if target != self.c:
            self._shift(target, used)

    def _shift(self, target: int, used: int) -> None:
        """Move the last ``used`` columns before ``c`` to end at ``target`` instead."""
        old, new = slice(self.c - used, self.c), slice(target - used, target)
        if used:
            self.keys[:, :, :, new] = self.keys[:, :, :, old].clone()
            self.values[:, :, :, new] = self.values[:, :, :, old].clone()
            self.mask[:, new] = self.mask[:, old].clone()
        self.mask[:, :target - used] = False
        self.mask[:, target:] = False
        self.c = target
        self.col.fill_(target)

    def _grow(self, columns: int) -> None:
        need = self.batch_size * columns * self.bytes_per_column
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            have = (self.keys.numel() * 2 * self.dtype.itemsize) if self.columns else 0
            if need > self.memory_fraction * (free + have):
                raise LwError(
                    f"the static cache needs {need / 2**30:.1f} GiB for {self.batch_size} rows "
                    f"of {columns} tokens, more than {self.memory_fraction:.0%} of the GPU's "
                    f"free {(free + have) / 2**30:.1f} GiB: lower batch_size or "
                    "max_new_tokens, or load the model with cuda_graphs=False.")
        shape = (self.n_layers, self.batch_size, self.kv_heads, columns, self.head_dim)
        keys = torch.zeros(shape, dtype=self.dtype, device=self.device)
        values = torch.zeros(shape, dtype=self.dtype, device=self.device)
        mask = torch.zeros(self.batch_size, columns, dtype=torch.bool, device=self.device)
        if self.columns:
            keys[..., :self.columns, :], values[..., :self.columns, :] = self.keys, self.values
            mask[:, :self.columns] = self.mask
        self.keys, self.values, self.mask, self.columns = keys, values, mask, columns
        self._graphs.clear()  # they point at the old buffers

    def _view_cache(self, keys, values, cols):
        cache = DynamicCache(config=self.model.config)
        cache.layers = [_SlotLayer(keys[i], values[i], cols) for i in range(self.n_layers)]
        return cache

    # -- decoding --------------------------------------------------------------------------
    def _decode(self, rows: dict) -> None:
        """One step for every live row: write column ``c``, then ``c`` moves right."""
        self._room(need_left=0, rows=rows)
        size = (_bucket(max(rows) + 1, self.batch_size, 1),
                _bucket(self.c + 1, self.columns, MIN_COLUMNS))
        if not self.graphs:
            self._step_fn(*size)()
        else:
            graph = self._graphs.get(size)
            if graph is None:
                graph = self._graphs[size] = self._capture(self._step_fn(*size))
            graph.replay()
        self.c += 1

    def _step_fn(self, slots: int, columns: int):
        """The decode step over the first ``slots`` slots and ``columns`` columns."""
        mask = self.mask[:slots, :columns]
        cache = self._view_cache(self.keys[:, :slots, :, :columns],
                                 self.values[:, :slots, :, :columns], self.col)
        ids, pos, logits = self.ids[:slots], self.pos[:slots], self.logits[:slots]

        def step():
            mask.index_fill_(1, self.col, True)
            out = self.model(input_ids=ids, attention_mask=mask[:, None, None, :],
                             position_ids=pos, use_cache=True, logits_to_keep=1,
                             **{self.cache_arg: cache})
            logits.copy_(out.logits[:, -1, :])
            pos.add_(1)
            self.col.add_(1)

        return step

    def _capture(self, step):
        """A CUDA graph of ``step``; the warm-up run's writes are undone (they land in
        column ``c``, which the real step writes again, and in ``col``/``pos``, restored)."""
        col, pos = self.col.clone(), self.pos.clone()
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            step()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        self.col.copy_(col)
        self.pos.copy_(pos)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        self.captures += 1
        return graph


def _bucket(n: int, cap: int, low: int) -> int:
    """The smallest power of two >= n (at least ``low``), at most ``cap``."""
    return min(cap, max(low, 1 << (n - 1).bit_length()))
