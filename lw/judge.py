"""LongBench-Write quality judge with any model spec (arXiv 2408.07055, section 4).

Two modes, recorded with every judgement (``mode="auto"``, the default, takes ``prob`` for
local models and ``text`` otherwise):
- ``text``: the judge writes a reply ending in a JSON object of six 1-5 ratings, read by
  ``lw.scoring.parse_judgement``. Invalid replies are retried (``retries``, 5 by default, each
  with a fresh seed); items never scored are stored as unscored and reported as coverage, never
  dropped and never defaulted, unless ``official=True`` asks for the official script's habits
  (a missing dimension counts 3; an item that never parses is dropped).
- ``prob`` (local transformers models only): the kit writes ``{"Relevance": `` itself and reads
  the judge's next-token probabilities for the digits 1-5; the score is their expectation, then
  the likeliest digit is written and the next dimension asked. It cannot fail to parse, which
  makes a small local judge usable.

    judgements = judge(model, preds, "runs/small/judge.jsonl", mode="prob")
"""

import json

from lw import prompts, scoring
from lw.errors import LwError
from lw.store import ResultStore

MAX_RESPONSE_CHARS = 60_000  # very long answers are cut for the judge's context


def judge(model, preds: list[dict], path, mode: str = "auto", retries: int = 5,
          official: bool = False, temperature: float = 0.5, max_new_tokens: int = 512,
          progress: bool = True) -> list[dict]:
    """Judge every prediction (resumable, keyed by id); returns one record per prediction:
    ``{"id", "scores" (dict or None), "mode", "attempts", "error", "judge", "prompt_version"}``.
    """
    if mode == "auto":  # probabilities where the model exposes them, else text
        mode = "prob" if hasattr(model, "tokenizer") else "text"
    if mode not in ("text", "prob"):
        raise LwError(f"judge mode must be 'auto', 'text' or 'prob', got {mode!r}.")
    if mode == "prob" and not hasattr(model, "tokenizer"):
        raise LwError(f"the probability judge reads next-token probabilities, which {model.spec} "
                      "does not expose: use a local model (hf:, smollm2-135m) or mode='text'.")
    store = ResultStore(path, key="id")
    todo = [p for p in preds if p.get("status", "done") == "done" and p["id"] not in store]
    template = prompts.load("judge", "en")
    base = {"mode": mode, "judge": model.info(), "prompt_version": template.tag,
            "official": official}
    if mode == "prob":
        from tqdm.auto import tqdm

        for p in tqdm(todo, desc=f"judge {model.spec}", disable=not progress):
            store.add({"id": p["id"], **base, "scores": prob_scores(model, _prompt(template, p)),
                       "attempts": 1, "error": None})
    else:
        _judge_text(model, todo, store, base, template, retries, official, temperature,
                    max_new_tokens)
    out = []
    for p in preds:
        rec = store.get(p["id"])
        if rec is None:  # the prediction itself failed: nothing to judge
            rec = {"id": p["id"], **base, "scores": None, "attempts": 0,
                   "error": "no prediction"}
        if official and rec["scores"] is None:
            continue  # the official script silently drops these
        out.append(rec)
    return out


def _prompt(template, pred: dict) -> str:
    return template.render("judge", instruction=pred["prompt"],
                           response=pred.get("response", "")[:MAX_RESPONSE_CHARS])


def _judge_text(model, todo, store, base, template, retries, official, temperature,
                max_new_tokens) -> None:
    pending = {p["id"]: p for p in todo}
    errors: dict[str, str] = {}
    for attempt in range(1, retries + 1):
        if not pending:
            break
        items = list(pending.values())
        outs = model.generate([_prompt(template, p) for p in items], errors="return",
                              temperature=temperature, max_new_tokens=max_new_tokens,
                              seed=attempt)
        for p, out in zip(items, outs, strict=True):
            try:
                if out.finish_reason == "error":
                    raise scoring.JudgementError(out.error)
                scores = (_parse_official(out.text) if official
                          else scoring.parse_judgement(out.text))
            except scoring.JudgementError as exc:
                errors[p["id"]] = str(exc)
                continue
            store.add({"id": p["id"], **base, "scores": scores, "attempts": attempt,
                       "error": None})
            del pending[p["id"]]
    for p in pending.values():  # never scored: kept, and counted in the coverage
        store.add({"id": p["id"], **base, "scores": None, "attempts": retries,
                   "error": errors.get(p["id"])})


def _parse_official(text: str) -> dict:
    """The official script's reading: any JSON object; a missing dimension counts 3."""
    obj = scoring._find_json_object(text or "")
    if obj is None:
        raise scoring.JudgementError("no JSON object")
    filled = {d: 3 for d in scoring.DIMENSIONS}
    filled.update({d: v for d, v in obj.items() if d in filled})
    return scoring.parse_judgement(json.dumps(filled))


def prob_scores(model, prompt: str) -> dict[str, float]:
    """Expected 1-5 rating per dimension from the judge's next-token probabilities.

    One forward pass over the prompt and ``{"Relevance": ``; then, for each dimension, the
    probabilities of the tokens "1".."5" give the expectation, the likeliest digit and the next
    key are appended, reusing the KV cache, so a judgement costs one prefill plus a few tokens.
    """
    import torch

    tok = model.tokenizer
    digits = [tok.encode(str(d), add_special_tokens=False) for d in range(1, 6)]
    if any(len(d) != 1 for d in digits):
        raise LwError(f"{model.spec}'s tokenizer splits the digits 1-5; the probability judge "
                      "needs one token each: use mode='text'.")
    digit_ids = torch.tensor([d[0] for d in digits])
    text = model.render([{"role": "user", "content": prompt}],
                        prompts.load("judge", "en").render("prob_prefix"))
    ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids.to(model.device)
    scores, past = {}, None
    with torch.inference_mode():
        for k, dim in enumerate(scoring.DIMENSIONS):
            out = model.model(input_ids=ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            probs = torch.softmax(out.logits[0, -1, digit_ids].float(), dim=-1)
            scores[dim] = round(float((probs * torch.arange(1, 6, device=probs.device)).sum()), 4)
            if k + 1 < len(scoring.DIMENSIONS):
                best = int(probs.argmax()) + 1
                nxt = f'{best}, "{scoring.DIMENSIONS[k + 1]}": '
                ids = tok(nxt, add_special_tokens=False, return_tensors="pt").input_ids.to(
                    model.device)
    return scores
