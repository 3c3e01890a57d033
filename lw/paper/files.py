"""The official LongWriter evaluation files, read and written by the kit.

THUDM/LongWriter's ``evaluation/pred.py`` writes ``pred.jsonl``: each benchmark row ("prompt",
"type", "length") plus "response_length" (its count_words, the rule ``lw.text.count_words``
implements) and "response". ``eval_quality.py`` writes ``judge.jsonl``: each pred.jsonl row it
scored plus "scores" (the judge's JSON, "Analysis" included), in its own shuffled order, then one
last line of totals: per dimension (mean - 1) * 25 (a dimension missing from a row counts 3) and
"total", the mean of the six. Both write ``json.dumps(..., ensure_ascii=False)`` lines.

    lw.paper.files.write_official_preds(preds, "models/mine/pred.jsonl")   # their scripts score it
    theirs = lw.paper.files.read_official_preds("models/LongWriter-glm4-9b/pred.jsonl", rows)
    judged = lw.paper.files.read_official_judgements("models/LongWriter-glm4-9b/judge.jsonl", theirs)
    lw.longbench.results(theirs, judged)                                 # the kit scores theirs

The functions are re-exported by ``lw.longbench``, where notebooks call them.
"""

import json
import math
import os
from pathlib import Path

from lw import records, scoring, text
from lw.errors import LwError
from lw.paper.benchmarks import check_rows
from lw.records import Answer, Judgement, Prompt

VERSION = 1  # bump when what these functions read or write changes

OFFICIAL_ROW = ("prompt", "type", "length")
OFFICIAL_SOURCE = "official-file"


def write_official_preds(preds: list[Answer], path, skip_failed: bool = False) -> dict:
    """Write predictions as the official ``pred.jsonl``, which eval_length.py and
    eval_quality.py score unchanged.

    Each line: the benchmark row's ``prompt``, ``type`` (where the row has one) and ``length``,
    then ``response_length`` (``lw.text.count_words``, the official count) and ``response``.
    A failed prediction has no answer, and pred.py never writes such a line: it is an error
    unless ``skip_failed``, which leaves it out (listed in ``left_out``). An empty answer is
    written with ``response_length`` 0, as pred.py would; eval_length.py divides by zero there
    (the kit scores it 0).

    Returns:
        ``{"path", "written", "left_out"}`` (ids left out).
    """
    # pred.py's rows always hold prompt and length; eval_length.py fails on a line without.
    check_rows(preds, ("id", "prompt", "length"), "the predictions given to write_official_preds")
    failed = [p["id"] for p in preds if p.get("status", "done") != "done"]
    if failed and not skip_failed:
        raise LwError(f"{len(failed)} predictions failed ({', '.join(failed[:5])}): they have no "
                      "answer to write. Rerun predict to retry them, or pass skip_failed=True to "
                      "leave them out of the file.")
    lines = [_official_row(p) for p in preds if p.get("status", "done") == "done"]
    _write_jsonl(path, lines)
    return {"path": str(path), "written": len(lines), "left_out": failed}


def read_official_preds(path, rows: list[Prompt] | None = None, recount: bool = False
                        ) -> list[Answer]:
    """Predictions from an official ``pred.jsonl``, as records ``results`` scores.

    Args:
        path: the file (pred.py's, or ``write_official_preds``').
        rows: the benchmark rows the file answers (``lw.paper.benchmarks.load(...)``): each line takes
            the id of the row with its prompt (a prompt not among them, or another required
            length, is an error). None: ids are made from the prompt's text
            (``official_id``), the same for a prompt in pred.jsonl and judge.jsonl.
        recount: score the words ``lw.text.count_words`` finds in each response instead of the
            file's ``response_length``. By default a line whose two counts differ is an error:
            eval_length.py reads ``response_length``, so the kit does too, and they must agree.

    Returns:
        One record per line, in file order, in ``predict``'s shape (``status`` "done",
        ``words``, ``repetition``; ``truncated`` None: the file does not say).
    """
    index = _prompt_index(rows)
    out = [_pred_from_line(obj, n, path, index, recount) for n, obj in _read_jsonl(path)]
    _unique(out, path)
    return out


def write_official_judgements(judgements: list[Judgement], path, preds: list[Answer] | None = None
                              ) -> dict:
    """Write judgements as the official ``judge.jsonl``: for each scored judgement its
    prediction's pred.jsonl line plus ``"scores"``, then the totals line, as eval_quality.py
    computes it.

    Args:
        judgements: records from ``lw.judge.judge`` or ``read_official_judgements``.
        path: where to write.
        preds: the predictions judged (matched by id); None when the judgement records carry
            ``prompt``, ``length`` and ``response`` themselves (``read_official_judgements``'
            records do).

    ``"scores"`` is what the official protocol's judge wrote (``raw_scores``: "Analysis" and the
    values as given) where the record has it, else the kit's six ratings. Unscored judgements
    are left out, as eval_quality.py leaves out what it could not score (``left_out``).

    Returns:
        ``{"path", "written", "left_out", "totals"}``.
    """
    by_id = {p["id"]: p for p in preds} if preds is not None else {}
    lines, left_out = [], []
    for j in judgements:
        if not j.get("scores"):
            left_out.append(j["id"])
            continue
        pred = by_id.get(j["id"], j if preds is None else None)
        if pred is None or "response" not in pred:
            raise LwError(f"judgement {j['id']!r} has no prediction to write beside it: pass the "
                          "judged predictions as preds=.")
        raw = j.get("raw_scores")
        scores = raw if isinstance(raw, dict) else {d: _plain(v) for d, v in j["scores"].items()}
        lines.append({**_official_row(pred), "scores": scores})
    if not lines:
        raise LwError(f"no scored judgement to write to {path}: eval_quality.py's totals need "
                      "at least one (it divides by their number).")
    totals = official_totals([line["scores"] for line in lines])
    _write_jsonl(path, [*lines, totals])
    return {"path": str(path), "written": len(lines), "left_out": left_out, "totals": totals}


def read_official_judgements(path, preds: list[Answer] | None = None,
                             rows: list[Prompt] | None = None) -> list[Judgement]:
    """Judgements from an official ``judge.jsonl``, as records ``results`` scores.

    Args:
        path: the file (eval_quality.py's, or ``write_official_judgements``').
        preds: the predictions the file judged (e.g. ``read_official_preds`` of its pred.jsonl):
            lines are matched to them by prompt and take their ids, and the records come back
            in their order; a prediction the file lacks (eval_quality.py drops what it never
            scored) comes back unscored, so ``results`` counts it in the coverage.
        rows: without ``preds``, benchmark rows to take ids from (as in ``read_official_preds``).

    Returns:
        Judgement records: ``id``, ``scores`` (the six dimensions as float, as the official
        totals read them; a missing one counts 3, as there, and ``error`` says so),
        ``raw_scores`` (the file's dict), ``protocol`` "official", the judged prediction's
        fields (prompt, length, response, ...). The totals line is checked against the rows
        above it (an LwError if they disagree) and not returned: ``official_totals`` gives it.
    """
    lines = list(_read_jsonl(path))
    if lines and "scores" not in lines[-1][1] and "total" in lines[-1][1]:
        *lines, (n_tot, file_totals) = lines
    else:
        file_totals = None  # the script stopped before its last step
    index = _prompt_index(preds if preds is not None else rows)
    out = []
    for n, obj in lines:
        if not isinstance(obj.get("scores"), dict):
            raise LwError(f"{path} line {n} has no 'scores' object: not an eval_quality.py "
                          "judge.jsonl line (a pred.jsonl? use read_official_preds).")
        pred = _pred_from_line({k: v for k, v in obj.items() if k != "scores"}, n, path, index,
                               recount=True)
        out.append(records.judgement(_judgement_from_scores(pred, obj["scores"], path, n)))
    _unique(out, path)
    if file_totals is not None:
        want = official_totals([j["raw_scores"] for j in out])
        bad = {k: (file_totals.get(k), v) for k, v in want.items()
               if not isinstance(file_totals.get(k), int | float)
               or not math.isclose(file_totals[k], v, rel_tol=1e-9, abs_tol=1e-9)}
        if bad:
            raise LwError(f"{path} line {n_tot}: the totals line disagrees with the scores above "
                          f"it ({bad}, file vs recomputed): the file was edited or cut.")
    if preds is None:
        return out
    got = {j["id"]: j for j in out}
    extra = sorted(set(got) - {p["id"] for p in preds})
    if extra:
        raise LwError(f"{path} judges {len(extra)} answers that are not among preds "
                      f"({', '.join(extra[:3])}): pass the predictions it judged.")
    return [got.get(p["id"]) or records.judgement(_unjudged(p, path)) for p in preds]


def official_totals(scores: list[dict] | str) -> dict:
    """The totals line of eval_quality.py: per dimension ((mean of float(value)) - 1) * 25,
    a dimension missing from a dict counting 3, and "total", the mean of the six.

    ``scores``: the "scores" dicts of the lines, or the path of a judge.jsonl (then its last
    line is returned as written, or an LwError where it has none)."""
    if not isinstance(scores, list):
        lines = list(_read_jsonl(scores))
        if not lines or "total" not in lines[-1][1] or "scores" in lines[-1][1]:
            raise LwError(f"{scores} has no totals line: eval_quality.py stopped before its "
                          "last step; read_official_judgements still reads the scored lines.")
        return lines[-1][1]
    if not scores:
        raise LwError("no scores to total: eval_quality.py divides by their number.")
    totals = {}
    for dim in scoring.DIMENSIONS:
        vals = [float(s[dim]) if dim in s else 3.0 for s in scores]
        totals[dim] = scoring.dimension_score(sum(vals) / len(vals))
    totals["total"] = sum(totals.values()) / len(totals)
    return totals


def official_id(prompt: str) -> str:
    """The id the kit gives a prompt read from an official file without benchmark rows: a hash
    of its text, so the same prompt has the same id in pred.jsonl and judge.jsonl."""
    import hashlib

    return "official-" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:12]


def _official_row(pred: dict) -> dict:
    row = {k: pred[k] for k in OFFICIAL_ROW if pred.get(k) is not None}
    response = pred.get("response") or ""
    return {**row, "response_length": text.count_words(response), "response": response}


def _pred_from_line(obj: dict, n: int, path, index: dict | None, recount: bool) -> dict:
    prompt, length, response = obj.get("prompt"), obj.get("length"), obj.get("response")
    if not isinstance(prompt, str) or not isinstance(response, str) or isinstance(length, bool) \
            or not isinstance(length, int | float) or length <= 0:
        raise LwError(f"{path} line {n} is not a pred.jsonl row: it needs a string 'prompt', a "
                      "positive 'length' and a string 'response'.")
    words = text.count_words(response)
    if not recount and obj.get("response_length") != words:
        raise LwError(f"{path} line {n}: response_length {obj.get('response_length')!r}, but "
                      f"the response has {words} words by the official count_words rule. Fix "
                      "the file, or pass recount=True to score the words in the text.")
    if index is None:
        ids = {"id": official_id(prompt), "language": text.language(prompt),
               "bucket": scoring.bucket(length)}
    else:
        row = index.get(prompt)
        if row is None or row["length"] != length:
            why = "not among the rows given" if row is None else \
                f"asks for {row['length']} words in the rows given, {length} here"
            raise LwError(f"{path} line {n}: the prompt {prompt[:60]!r} is {why}: pass the "
                          "benchmark rows (or predictions) the file answers.")
        ids = {k: row[k] for k in ("id", "language", "bucket") if k in row}
    return {**obj, **ids, "status": "done", "response": response, "words": words,
            "repetition": round(text.repetition(response), 3), "finish_reason": None,
            "truncated": None, "model": {"spec": OFFICIAL_SOURCE, "path": str(path)},
            "versions": {"official_files": VERSION}}


def _judgement_from_scores(pred: dict, raw: dict, path, n: int) -> dict:
    scores, missing = {}, []
    for dim in scoring.DIMENSIONS:
        if dim not in raw:
            missing.append(dim)
            scores[dim] = 3.0
            continue
        try:
            scores[dim] = float(raw[dim])
        except (TypeError, ValueError) as exc:
            raise LwError(f"{path} line {n}: '{dim}' is {raw[dim]!r}, which eval_quality.py's "
                          "totals cannot read either (it would crash there).") from exc
    kept = {k: pred[k] for k in ("id", *OFFICIAL_ROW, "response_length", "response", "language",
                                 "bucket") if k in pred}
    return {**kept, "scores": scores, "raw_scores": raw, "unscored": None,
            "protocol": "official", "mode": "text", "prompt_version": OFFICIAL_SOURCE,
            "judge": {"spec": OFFICIAL_SOURCE, "path": str(path)}, "attempts": None,
            "answer_chars": len(pred["response"]), "judged_chars": len(pred["response"]),
            "answer_cut": False,
            "error": f"missing {missing}: counted 3, as eval_quality.py's totals count them"
            if missing else None}


def _unjudged(pred: dict, path) -> dict:
    """A prediction the judge.jsonl lacks: eval_quality.py writes only what it scored."""

    return {"id": pred["id"], "scores": None, "raw_scores": None, "protocol": "official",
            "unscored": scoring.DROPPED, "mode": "text", "prompt_version": OFFICIAL_SOURCE,
            "judge": {"spec": OFFICIAL_SOURCE, "path": str(path)}, "attempts": None,
            "answer_cut": False, "error": None}


def _prompt_index(rows: list[dict] | None) -> dict | None:
    if rows is None:
        return None
    check_rows(rows, ("id", "prompt", "length"), "the rows given")
    index = {}
    for r in rows:
        if r["prompt"] in index:
            raise LwError(f"two rows share the prompt {r['prompt'][:60]!r} ({index[r['prompt']]['id']}"
                          f", {r['id']}): official files are matched by prompt, which must be "
                          "unique.")
        index[r["prompt"]] = r
    return index


def _unique(records: list[dict], path) -> None:
    seen = set()
    for r in records:
        if r["id"] in seen:
            raise LwError(f"{path} holds the prompt of {r['id']!r} twice: the kit keys answers by "
                          "prompt; keep one line per prompt.")
        seen.add(r["id"])


def _plain(value):
    """4.0 -> 4 (as a judge writes it); other values unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _write_jsonl(path, rows: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    os.replace(tmp, path)


def _read_jsonl(path):
    """(line number, object) for each non-blank line; a line that is not a JSON object is an
    LwError naming it."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LwError(f"{path} line {n} is not JSON ({exc}).") from exc
            if not isinstance(obj, dict):
                raise LwError(f"{path} line {n} is not a JSON object.")
            yield n, obj
