"""Chat conversations to training tokens: assistant-only labels, length limits, packing.

    examples, stats = tokenize(conversations, tokenizer, max_length=2048, overflow="drop")
    rows = pack(examples, max_length=2048)      # several conversations per training row
    batch = Collator(pad_id)(rows[:4])          # tensors for model(**batch)

Labels are -100 everywhere except the assistant's replies (and the end-of-turn token that closes
each reply), found by rendering the chat template up to each reply and checking that the rendered
prefix really is a prefix of the whole (a template that rewrites earlier turns is refused).

Packing follows MACHINE-NOTES: restarted ``position_ids`` alone do *not* isolate packed
conversations under sdpa/eager attention on CPU. The collator can add a 4D block-diagonal causal
mask ``[batch, 1, L, L]`` (``isolate="mask"``), or leave the boundaries in ``position_ids`` for
attention that reads them: varlen or flex kernels (``"position_ids"``, ``lw.sft.attention``) or
``lw.sft.segments`` (``"segments"``, what training uses on CPU: bench_packing measured 247.5
against 183.6 useful tokens/s for the mask on 2 CPU cores). Either way a conversation's logits
are the same alone and packed.
"""

from dataclasses import dataclass, field

from lw.errors import LwError

IGNORE = -100
OVERFLOW = ("drop", "truncate")


@dataclass
class Example:
    """One tokenized conversation."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_targets(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


@dataclass
class TokenStats:
    """What tokenization did, so nothing is dropped or cut silently."""

    conversations: int = 0
    kept: int = 0
    dropped_too_long: int = 0
    truncated: int = 0
    dropped_no_target: int = 0
    tokens: int = 0
    target_tokens: int = 0
    lengths: list[int] = field(default_factory=list, repr=False)


def _render_ids(tokenizer, messages, generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def tokenize_one(messages: list[dict], tokenizer) -> Example:
    """Token ids and assistant-only labels of one ``[{"role", "content"}, ...]`` conversation."""
    if not messages or not any(m.get("role") == "assistant" for m in messages):
        raise LwError("a training conversation needs at least one assistant message; got "
                      f"roles {[m.get('role') for m in messages]}.")
    ids = _render_ids(tokenizer, messages, generation_prompt=False)
    labels = [IGNORE] * len(ids)
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        start = _render_ids(tokenizer, messages[:i], generation_prompt=True)
        end = _render_ids(tokenizer, messages[:i + 1], generation_prompt=False)
        if ids[:len(start)] != start or ids[:len(end)] != end:
            raise LwError("the chat template does not render turns as prefixes of the whole "
                          "conversation, so assistant tokens cannot be located; use a model "
                          "whose template appends turns (most do).")
        # The reply, its end-of-turn token and what the template puts after it (a newline).
        labels[len(start):len(end)] = ids[len(start):len(end)]
    return Example(ids, labels)


def tokenize(conversations, tokenizer, max_length: int, overflow: str = "drop"):
    """Tokenize many conversations (each a list of messages or a ``{"messages": [...]}`` dict).

    Args:
        max_length: longest training sequence in tokens.
        overflow: "drop" conversations longer than that, or "truncate" them (cut at the end;
            one whose replies are all cut off is dropped). Both are counted in the stats.
    Returns:
        (examples, TokenStats)
    """
    if overflow not in OVERFLOW:
        raise LwError(f"overflow must be one of {OVERFLOW}, got {overflow!r}.")
    stats, examples = TokenStats(), []
    for conv in conversations:
        messages = conv["messages"] if isinstance(conv, dict) else conv
        ex = tokenize_one(messages, tokenizer)
        stats.conversations += 1
        stats.lengths.append(len(ex))
        if len(ex) > max_length:
            if overflow == "drop":
                stats.dropped_too_long += 1
                continue
            ex = Example(ex.input_ids[:max_length], ex.labels[:max_length])
            stats.truncated += 1
        if ex.n_targets == 0:
            stats.dropped_no_target += 1
            continue
        examples.append(ex)
        stats.kept += 1
        stats.tokens += len(ex)
        stats.target_tokens += ex.n_targets
    return examples, stats


def pack(examples: list[Example], max_length: int) -> list[list[Example]]:
    """Group conversations into rows of at most ``max_length`` tokens (first-fit decreasing).
    Each row is a list of examples that the collator concatenates with isolated attention."""
    rows: list[list[Example]] = []
    room: list[int] = []
    for ex in sorted(examples, key=len, reverse=True):
        if len(ex) > max_length:
            raise LwError(f"an example of {len(ex)} tokens does not fit max_length {max_length}: "
                          "tokenize with the same max_length first.")
        for i, free in enumerate(room):
            if len(ex) <= free:
                rows[i].append(ex)
                room[i] -= len(ex)
                break
        else:
            rows.append([ex])
            room.append(max_length - len(ex))
    return rows


class Collator:
    """Rows (a list of examples each; a single example is a row of one) to padded tensors.

    Returns ``input_ids``, ``labels``, ``position_ids`` (restarting for every conversation),
    ``seq_ids`` (which conversation of the batch a token belongs to, -1 for padding; used by the
    loss weighting) and ``attention_mask``: 2D when no row holds more than one conversation,
    else a 4D block-diagonal causal mask with 0 where attention is allowed and the dtype's
    minimum elsewhere. With ``isolate="position_ids"`` (flash-attention kernels on GPU, which
    read conversation boundaries from restarting ``position_ids``; also the kit's varlen and flex
    paths, ``lw.sft.attention``) the mask is left out: a 4D mask of a 32k-token row would take
    4 GB. ``isolate="segments"`` (``lw.sft.segments``, any device) leaves it out too. Both continue
    the last conversation's positions over the padding, so padding joins the last conversation
    (after it, so never changing its outputs) instead of making one conversation per pad token.
    """

    def __init__(self, pad_id: int, mask_dtype=None, isolate: str = "mask"):
        if isolate not in ("mask", "position_ids", "segments"):
            raise LwError(f"isolate must be 'mask', 'position_ids' or 'segments', got {isolate!r}.")
        self.pad_id = pad_id
        self.mask_dtype = mask_dtype
        self.isolate = isolate

    def __call__(self, rows) -> dict:
        import torch

        rows = [r if isinstance(r, list) else [r] for r in rows]
        width = max(sum(len(ex) for ex in row) for row in rows)
        n = len(rows)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE, dtype=torch.long)
        position_ids = torch.zeros((n, width), dtype=torch.long)
        seq_ids = torch.full((n, width), -1, dtype=torch.long)
        seq = 0
        for b, row in enumerate(rows):
            at = 0
            for ex in row:
                span = slice(at, at + len(ex))
                input_ids[b, span] = torch.tensor(ex.input_ids)
                labels[b, span] = torch.tensor(ex.labels)
                position_ids[b, span] = torch.arange(len(ex))
                seq_ids[b, span] = seq
                seq, at = seq + 1, at + len(ex)
            if self.isolate != "mask" and row and at < width:  # padding extends the last one
                last = len(row[-1])
                position_ids[b, at:] = torch.arange(last, last + width - at)
        batch = {"input_ids": input_ids, "labels": labels, "position_ids": position_ids,
                 "seq_ids": seq_ids}
        if all(len(row) == 1 for row in rows):
            batch["attention_mask"] = (seq_ids >= 0).long()
        elif self.isolate in ("position_ids", "segments"):
            pass  # varlen kernels or lw.sft.segments: boundaries come from position_ids
        else:
            batch["attention_mask"] = block_causal_mask(seq_ids, self.mask_dtype)
        return batch


def block_causal_mask(seq_ids, dtype=None):
    """4D additive mask ``[batch, 1, L, L]``: token i sees token j when j <= i and both belong to
    the same conversation. Padding rows see themselves only (so softmax stays finite)."""
    import torch

    dtype = dtype or torch.float32
    n, width = seq_ids.shape
    same = seq_ids[:, :, None] == seq_ids[:, None, :]
    causal = torch.tril(torch.ones(width, width, dtype=torch.bool))
    allowed = same & causal & (seq_ids[:, :, None] >= 0)
    allowed |= torch.eye(width, dtype=torch.bool)  # padding attends to itself: no all-masked row
    mask = torch.zeros((n, 1, width, width), dtype=dtype)
    return mask.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


def save_examples(path, examples: list[Example], stats: TokenStats) -> None:
    """Store tokenized examples (and their stats) in one ``.npz`` file, written to a temporary
    name and renamed, so a reader never sees half a file (a killed run leaves no torn cache).

    Labels are stored as a target mask over the ids: ``tokenize_one`` copies the ids into every
    labelled position, so a byte per token is enough instead of a second int array."""
    import json
    import os
    from dataclasses import asdict
    from pathlib import Path

    import numpy as np

    ids = np.fromiter((t for ex in examples for t in ex.input_ids), dtype=np.int32)
    labels = np.fromiter((t for ex in examples for t in ex.labels), dtype=np.int64)
    target = labels != IGNORE
    if not np.array_equal(labels[target], ids[target]):
        raise LwError("a label differs from its input id, so examples cannot be stored as a "
                      "target mask (tokenize_one copies ids into labels).")
    offsets = np.cumsum([0] + [len(ex) for ex in examples], dtype=np.int64)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, ids=ids, target=target, offsets=offsets,
                 stats=np.array(json.dumps(asdict(stats))))
    os.replace(tmp, path)


def load_examples(path) -> tuple[list[Example], TokenStats]:
    """The examples and stats ``save_examples`` stored."""
    import json

    import numpy as np

    with np.load(path) as z:
        ids, target, offsets = z["ids"], z["target"], z["offsets"]
        stats = TokenStats(**json.loads(str(z["stats"])))
    labels = np.where(target, ids, IGNORE)
    examples = [Example(ids[a:b].tolist(), labels[a:b].tolist())
                for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return examples, stats
