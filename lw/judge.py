"""LongBench-Write quality judge with any model spec (arXiv 2408.07055, section 4).

Two protocols, recorded with every judgement (``protocol`` and ``prompt_version``):
- ``kit`` (default): the kit's own prompt (``lw/prompts/judge_en.txt``), in one of two modes
  (``mode="auto"`` takes ``prob`` where ``model.capabilities.token_probabilities``, else
  ``text``):
  - ``text``: the judge writes a reply ending in a JSON object of six 1-5 ratings, read by
    ``lw.scoring.parse_judgement``. Invalid replies are retried (``retries``, 5 by default,
    each with a fresh seed); an item never scored is stored unscored, with its reason.
  - ``prob`` (local transformers models): the kit writes ``{"Relevance": `` itself and
    reads the judge's next-token probabilities for the digits 1-5; the score is their
    expectation, then the likeliest digit is written and the next dimension asked. It cannot
    fail to parse, which makes a small local judge usable.
- ``official``: the paper's ``evaluation/eval_quality.py`` as it runs: its judge prompt
  (fetched by ``lw.paper.prompts``), one user message, temperature 0.5, 1,024 new tokens, replies
  read by ``parse_judgement(official=True)``, asked again while its counter of tries is under 5
  (counted as the script counts, ``lw.scoring.read_official``), and its drop rule: an item never
  scored is left out of S_q. The kit still stores it (unscored, reason ``DROPPED``) so a rerun
  does not ask again, and ``coverage`` reports it. The script's transport retries (the
  backend's own here) are apart from its 5 tries, with one difference: where the script, its
  transport retries spent, reads its own "Max tries. Failed." as an unreadable reply and spends
  a try on it, the kit stores nothing and asks again on the next run (an outage is no verdict).

The judge sees the whole answer unless ``max_answer_chars`` caps it; every record says how many
characters were judged out of how many (``judged_chars``, ``answer_chars``, ``answer_cut``).

Each verdict is stored the moment it is reached (``model.stream``), and so is each unusable
reply before it (an attempt record, id ``<id>/attempt<n>``, beside the verdicts in the same
file), so a kill loses only the requests in flight: a rerun continues an item at its next
attempt, its earlier attempts counted against ``retries`` (or the official counter of tries).
"The judge answered but never usably" is a verdict: stored unscored, with its reason, counted in
``coverage`` and not asked again. "No answer" is not: a request that failed for transport reasons
(server down, 5xx or timeouts after the client's own retries: ``lw.llm.failures.TRANSPORT``) is
not stored, uses none of the protocol's tries, and is returned with ``pending`` True
(``unscored`` ``NO_ANSWER``); a warning counts them and gives the last error, ``coverage``
reports them as ``judge_pending``, and rerunning with the same path asks them again. A request
the judge's server refused as wrong (400/422, e.g. a prompt over the judge's context:
``lw.llm.failures.REQUEST``) would fail again unchanged: it is returned unscored (``REFUSED``),
not stored and not pending, and the warning says what to change (``max_answer_chars``, a lower
``max_new_tokens``, a judge with a longer context).

    judgements = judge(model, preds, "runs/small/judge.jsonl", mode="prob")
    judgements = judge(gpt4o, preds, "runs/full/judge-official.jsonl", protocol="official")
    coverage(judgements)  # scored, unscored by reason, pending (no answer yet), answers cut
"""

import warnings
from collections import Counter

from lw import prompts, records, scoring
from lw.errors import LwError
from lw.llm.base import Request
from lw.llm.failures import TRANSPORT, failure_kind
from lw.paper import prompts as paper_prompts
from lw.paper.benchmarks import check_rows
from lw.records import Answer, Judgement
from lw.store import ResultStore

PROTOCOLS = ("kit", "official")
# The kit protocol's defaults; the official ones are eval_quality.py's and cannot be changed.
KIT_SETTINGS = {"retries": 5, "temperature": 0.5, "max_new_tokens": 512}
OFFICIAL_SETTINGS = {"retries": scoring.OFFICIAL_TRIES, "temperature": 0.5,
                     "max_new_tokens": 1024}
DROPPED = scoring.DROPPED
UNTOTALLABLE = "accepted by the official script, which cannot total it"
NEVER_PARSED = "no valid judgement"
NO_PREDICTION = "no prediction"
NO_FIT = "does not fit the judge's context"
NO_ANSWER = "no answer from the judge (transport failure): not stored, rerun to ask again"
REFUSED = "refused by the judge's server (the request is wrong): not stored"
REFUSED_ADVICE = ("asking again unchanged fails the same way: set max_answer_chars to judge a cut "
                  "answer, lower max_new_tokens, or use a judge with a longer context, then "
                  "rerun")


def judge(model, preds: list[Answer], path, mode: str = "auto", retries: int | None = None,
          protocol: str = "kit", max_answer_chars: int | None = None,
          temperature: float | None = None, max_new_tokens: int | None = None,
          progress: bool = True, official: bool | None = None) -> list[Judgement]:
    """Judge every prediction (resumable, keyed by id).

    Args:
        model: the judge, any ``lw.llm`` chat model.
        preds: records with "id", "prompt", "response" (and "status"; failed ones are not
            judged).
        path: the JSONL store; rerunning with the same path skips what is stored.
        mode: "auto", "text" or "prob" (the kit protocol; the official one is "text").
        retries, temperature, max_new_tokens: the kit protocol's settings (defaults in
            ``KIT_SETTINGS``); the official protocol refuses values other than its own.
        protocol: "kit" or "official" (see the module docstring).
        max_answer_chars: judge at most this many characters of each answer (None: all).
        official: removed; use ``protocol="official"``.

    Returns:
        One record per prediction, in order: ``{"id", "scores" (dict or None), "unscored"
        (reason or None), "error", "protocol", "prompt_version", "mode", "judge", "attempts",
        "answer_chars", "judged_chars", "answer_cut", "max_answer_chars"}``; the official
        protocol adds "tries" (its counter) and "raw_scores" (the dict it would write). An item
        the judge gave no answer for (transport failure) is not stored: its record has
        ``"pending": True``, ``unscored`` ``NO_ANSWER`` and the last ``error``, and a warning
        counts such items. One whose request the server refused (400/422) is not stored either:
        ``unscored`` ``REFUSED``, not pending, and a warning says what to change.
    """
    if official is not None:
        raise LwError("judge(official=...) is gone: protocol='official' runs the paper's judge "
                      "prompt, settings, retries and drop rule; protocol='kit' (default) the kit's.")
    if protocol not in PROTOCOLS:
        raise LwError(f"judge protocol must be 'kit' or 'official', got {protocol!r}.")
    if max_answer_chars is not None and (not isinstance(max_answer_chars, int)
                                         or max_answer_chars < 1):
        raise LwError(f"max_answer_chars must be a positive int or None (the whole answer), got "
                      f"{max_answer_chars!r}.")
    settings = _settings(protocol, retries=retries, temperature=temperature,
                         max_new_tokens=max_new_tokens)
    mode = _mode(model, mode, protocol)
    check_rows(preds, ("id", "prompt"), "the predictions given to judge")
    store = ResultStore(path, key="id")
    base = {"protocol": protocol, "mode": mode, "judge": model.info(),
            "prompt_version": (paper_prompts.version("judge") if protocol == "official"
                               else prompts.load("judge", "en").tag),
            "max_answer_chars": max_answer_chars}
    _check_store(store, preds, base, path)
    todo = [p for p in preds if p.get("status", "done") == "done" and p["id"] not in store]
    if todo and protocol == "official":
        paper_prompts.locate("judge")  # fetch and verify before the first call
    asks = {str(p["id"]): _prompt(protocol, p, max_answer_chars) for p in todo}
    no_answer: dict[str, dict] = {}  # id -> {"attempts", "error"}: transport failures
    refused: dict[str, dict] = {}  # the same for requests the server refused as wrong
    if mode == "prob":
        _judge_prob(model, todo, store, base, asks, progress)
    else:
        _judge_text(model, todo, store, base, asks, settings, protocol, no_answer, refused,
                    progress)
    out = []
    for p in preds:
        rec = store.get(p["id"])
        if rec is None and str(p["id"]) in no_answer:
            rec = {"id": p["id"], **base, **asks[str(p["id"])][1], "scores": None,
                   "unscored": NO_ANSWER, "pending": True, **no_answer[str(p["id"])]}
        elif rec is None and str(p["id"]) in refused:
            rec = {"id": p["id"], **base, **asks[str(p["id"])][1], "scores": None,
                   "unscored": REFUSED, "pending": False, **refused[str(p["id"])]}
        elif rec is None:  # the prediction itself failed: nothing to judge
            rec = {"id": p["id"], **base, "scores": None, "unscored": NO_PREDICTION,
                   "attempts": 0, "error": p.get("error")}
        out.append(records.judgement(rec))
    if no_answer:
        last = no_answer[next(reversed(no_answer))]["error"]
        warnings.warn(f"judge: {model.spec} gave no answer for {len(no_answer)} of {len(todo)} "
                      f"items (last error: {str(last)[:300]}). They are not stored as verdicts: "
                      f"once the judge is reachable, rerun judge() with the same path to ask "
                      f"them again.", stacklevel=2)
    if refused:
        last = refused[next(reversed(refused))]["error"]
        warnings.warn(f"judge: {model.spec}'s server refused the requests for {len(refused)} of "
                      f"{len(todo)} items as wrong (last error: {str(last)[:300]}); they are not "
                      f"stored: {REFUSED_ADVICE}.", stacklevel=2)
    return out


def coverage(judgements: list[Judgement]) -> dict:
    """What a results table reports about the judge: how many items were scored, why the others
    were not (``judge_unscored_reasons``, e.g. ``DROPPED``), how many got no answer yet
    (``judge_pending``: transport failures, asked again by a rerun; ``judge_last_error`` says
    why), how many answers the judge saw cut (``judge_answers_cut``), and the protocols and
    prompt versions that ran. ``judge_coverage`` (scored items over all items, pending ones
    included), ``judge_pending``, ``judge_answers_cut`` and ``judge_protocol`` are the values
    ``lw.longbench.quality`` reports under those names."""
    n = len(judgements)
    scored = sum(1 for j in judgements if j.get("scores"))
    pending = [j for j in judgements if j.get("pending")]
    reasons = Counter(j.get("unscored") or "unknown" for j in judgements
                      if not j.get("scores") and not j.get("pending"))
    # Judgements stored before cuts were recorded (the judge cut at 60,000 characters, silently)
    # cannot say: None, as lw.longbench.quality reports it.
    unknown = any(j.get("scores") and "answer_cut" not in j for j in judgements)
    return {"judge_coverage": round(100.0 * scored / n, 1) if n else None,
            "judge_scored": scored, "judge_unscored": n - scored - len(pending),
            "judge_unscored_reasons": dict(sorted(reasons.items())),
            "judge_dropped_official": reasons.get(DROPPED, 0),
            "judge_pending": len(pending),
            "judge_last_error": pending[-1].get("error") if pending else None,
            "judge_answers_cut": None if unknown else sum(1 for j in judgements
                                                          if j.get("answer_cut")),
            "judge_protocol": sorted({j.get("protocol", "kit") for j in judgements}),
            "judge_prompt_version": sorted({str(j.get("prompt_version")) for j in judgements})}


def _settings(protocol: str, **given) -> dict:
    if protocol == "kit":
        return {k: KIT_SETTINGS[k] if v is None else v for k, v in given.items()}
    changed = {k: v for k, v in given.items() if v is not None and v != OFFICIAL_SETTINGS[k]}
    if changed:
        raise LwError(f"protocol='official' runs eval_quality.py's settings {OFFICIAL_SETTINGS}; "
                      f"{changed} would change them. Leave them out, or use protocol='kit'.")
    return dict(OFFICIAL_SETTINGS)


def _mode(model, mode: str, protocol: str) -> str:
    local = model.capabilities.token_probabilities  # declared by the backend, not guessed
    if mode not in ("auto", "text", "prob"):
        raise LwError(f"judge mode must be 'auto', 'text' or 'prob', got {mode!r}.")
    if protocol == "official":
        if mode == "prob":
            raise LwError("the official protocol reads written replies: use mode='text' (or "
                          "'auto'), or protocol='kit' for the probability judge.")
        return "text"
    if mode == "auto":
        return "prob" if local else "text"
    if mode == "prob" and not local:
        raise LwError(f"the probability judge reads next-token probabilities, which {model.spec} "
                      "does not expose: use a local model (hf:, smollm2-135m) or mode='text'.")
    return mode


def _check_store(store, preds, base, path) -> None:
    """Refuse to mix judgements made another way into one file (they would be averaged
    together): records stored before protocols existed count as the kit's."""
    wanted = (base["protocol"], base["prompt_version"], base["max_answer_chars"])
    for p in preds:
        rec = store.get(p["id"]) or store.get(_attempt_key(p["id"], 1))
        if rec is None:
            continue
        had = ("kit (missing dimensions counted 3)" if rec.get("official")
               else rec.get("protocol", "kit"), rec.get("prompt_version"),
               rec.get("max_answer_chars", base["max_answer_chars"]))
        if had != wanted:
            raise LwError(f"{path} holds judgements made with protocol, prompt, answer cap "
                          f"{had}, not {wanted}: give this run another path (lw.store.keyed_path "
                          "with the protocol and cap) or delete the file.")


def _prompt(protocol: str, pred: dict, cap: int | None) -> tuple[str, dict]:
    """The judge's prompt for one prediction, and what part of the answer it holds."""
    answer = pred.get("response") or ""
    judged = answer if cap is None else answer[:cap]
    if protocol == "official":
        text = paper_prompts.render("judge", INST=pred["prompt"], RESPONSE=judged)
    else:
        text = prompts.load("judge", "en").render("judge", instruction=pred["prompt"],
                                                  response=judged)
    return text, {"answer_chars": len(answer), "judged_chars": len(judged),
                  "answer_cut": len(judged) < len(answer)}


def _attempt_key(pid, attempt: int) -> str:
    """The store id of an item's unusable attempt ``attempt`` (1-based)."""
    return f"{pid}/attempt{attempt}"


def _judge_text(model, todo, store, base, asks, settings, protocol, no_answer, refused,
                progress):
    """Ask every item, each verdict stored as it is reached; an unusable reply is stored as an
    attempt and asked again (seed = attempt) while the protocol allows: the kit's ``retries``
    replies, or the official script's counter of tries (``lw.scoring.read_official``) under 5.
    An item with stored attempts continues at the next one, with the counter where they left it.
    A transport failure ends the item's asking for this run without a verdict (``no_answer``):
    the script's transport retries are the backend's own, apart from its 5 tries; a request the
    server refused ends it too (``refused``), since asking again would fail the same way."""
    config = model.config.updated(temperature=settings["temperature"],
                                  max_new_tokens=settings["max_new_tokens"])
    tries = {}  # the official script's counter
    ids = {str(p["id"]): p["id"] for p in todo}  # stored as given (an int id stays an int)

    def ask(pid: str, attempt: int) -> Request:
        return Request((pid, attempt), asks[pid][0], config.updated(seed=attempt), name=pid)

    def exhausted(pid: str, attempt: int) -> bool:
        if protocol == "official":
            return tries[pid] >= scoring.OFFICIAL_TRIES
        return attempt >= settings["retries"]

    def give_up(rec: dict, pid: str, error: str) -> None:
        if protocol == "official":
            store.add({**rec, "error": error, "scores": None, "tries": tries[pid],
                       "raw_scores": None, "unscored": DROPPED})
        else:  # never scored: kept, and counted in the coverage
            store.add({**rec, "scores": None, "unscored": NEVER_PARSED, "error": error})

    def unusable(pid: str, attempt: int, out, error: str) -> list:
        rec = {"id": ids[pid], **base, **asks[pid][1], "attempts": attempt}
        if exhausted(pid, attempt):
            give_up(rec, pid, error)
            return []
        # Kept before asking again, so a rerun after a kill continues at attempt + 1.
        store.add({**base, "id": _attempt_key(pid, attempt), "attempt_of": ids[pid],
                   "attempt": attempt, "reply": out.text, "error": error,
                   **({"tries": tries[pid]} if protocol == "official" else {})})
        return [ask(pid, attempt + 1)]

    def on_done(request, out):
        pid, attempt = request.key
        rec = {"id": ids[pid], **base, **asks[pid][1], "attempts": attempt}
        if out.finish_reason == "error":
            if failure_kind(out) == TRANSPORT:
                no_answer[pid] = {"attempts": attempt,
                                  "error": f"the judge call failed: {out.error}"}
            else:
                refused[pid] = {"attempts": attempt,
                                "error": f"the judge's server refused the request: {out.error}"}
            return []
        if protocol == "official":
            reading = scoring.read_official(out.text)
            if reading.accepted:
                store.add({**rec, "error": reading.reason, "scores": reading.scores,
                           "tries": tries[pid], "raw_scores": reading.raw,
                           "unscored": None if reading.scores else UNTOTALLABLE})
                return []
            tries[pid] += reading.tries
            return unusable(pid, attempt, out, reading.reason)
        try:
            scores = scoring.parse_judgement(out.text)
        except scoring.JudgementError as exc:
            return unusable(pid, attempt, out, str(exc))
        store.add({**rec, "scores": scores, "unscored": None, "error": None})
        return []

    first = []
    for p in todo:
        pid = str(p["id"])
        done = 0  # unusable attempts stored by earlier runs
        while _attempt_key(pid, done + 1) in store:
            done += 1
        last = store.get(_attempt_key(pid, done)) if done else None
        tries[pid] = last.get("tries", 0) if last else 0
        if done and exhausted(pid, done):  # the limit was lowered since: decide now
            give_up({"id": ids[pid], **base, **asks[pid][1], "attempts": done}, pid,
                    last["error"])
        else:
            first.append(ask(pid, done + 1))
    if first:
        model.stream(first, on_done, errors="return", progress=progress,
                     desc=f"judge {model.spec}")


def _judge_prob(model, todo, store, base, asks, progress) -> None:
    from lw.progress import bar as tqdm

    for p in tqdm(todo, desc=f"judge {model.spec}", disable=not progress):
        prompt, answer = asks[str(p["id"])]
        try:
            scores, error = prob_scores(model, prompt), None
        except scoring.JudgementError as exc:
            scores, error = None, str(exc)
        store.add({"id": p["id"], **base, **answer, "scores": scores,
                   "unscored": None if scores else NO_FIT, "attempts": 1, "error": error})


def prob_scores(model, prompt: str) -> dict[str, float]:
    """Expected 1-5 rating per dimension from the judge's next-token probabilities.

    One forward pass over the prompt and ``{"Relevance": ``; then, for each dimension, the
    probabilities of the tokens "1".."5" give the expectation, the likeliest digit and the next
    key are appended, reusing the KV cache, so a judgement costs one prefill plus a few tokens.

    Raises:
        JudgementError: the prompt is longer than the judge's context window (set
            ``max_answer_chars`` to judge a cut answer instead).
    """
    import torch

    tok = model.tokenizer
    digits = [tok.encode(str(d), add_special_tokens=False) for d in range(1, 6)]
    if any(len(d) != 1 for d in digits):
        raise LwError(f"{model.spec}'s tokenizer splits the digits 1-5; the probability judge "
                      "needs one token each: use mode='text'.")
    digit_ids = torch.tensor([d[0] for d in digits])
    # prompt_ids, not the rendered text: a model prompted pred.py's way ("inst") needs the BOS
    # token its tokenizer adds.
    ids = torch.tensor([model.prompt_ids([{"role": "user", "content": prompt}],
                                         prompts.load("judge", "en").render("prob_prefix"))],
                       device=model.device)
    window = getattr(model.model.config, "max_position_embeddings", None)
    if window and ids.shape[1] + 40 > window:  # ~40 tokens: the five keys and digits appended
        raise scoring.JudgementError(f"the judge prompt has {ids.shape[1]} tokens, beyond "
                                     f"{model.spec}'s {window}: set max_answer_chars")
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
