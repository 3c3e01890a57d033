"""LongBench-Write (paper section 4.1, notebook 03; also 05's evaluation): each model answers
the benchmark's prompts, a judge rates the answers, and S_l, S_q and S come out.

    preds, judged = run_models({"base": "smollm2-135m"}, rows, "runs/small/03")  # answer + judge
    res = results(preds["base"], judged["base"])   # S, S_l, S_q, per bucket, coverage, truncation
    length_table(preds["base"])                    # per answer: length, words, S_l, ...

    python -m lw.longbench --model smollm2-135m --prompts 8 --max-new-tokens 2048

Answers come from the one runner (``lw.generation.predict``; ``agentwrite:<spec>`` writes them
with ``lw.agentwrite``), the ratings from ``lw.judge``; the paper's own pred.jsonl / judge.jsonl
are read and written by ``lw.paper.files``. Scores read ``length`` (the required words) and
refuse a row without it, naming the row.
"""

import math

from lw import records, scoring
from lw.errors import LwError
from lw.generation import predict
from lw.paper.benchmarks import check_rows
from lw.records import Answer, Judgement, Prompt

# Stamped into saved result tables (``save_results``) as evaluate_version.
VERSION = 1


def length_table(preds: list[Answer]):
    """Per prediction: id, language, bucket, length (the words asked for), words, usable_words
    (words before the answer degenerates, ``lw.records.answer_usable_words``; None where no
    response text was kept), S_l, truncated, capped, repetition, status."""
    import pandas as pd

    check_rows(preds, ("id", "length"), "the predictions")
    rows = [{"id": p["id"], "language": p.get("language", "en"),
             "bucket": scoring.bucket(p["length"]), "length": p["length"],
             "words": p.get("words", 0), "usable_words": records.answer_usable_words(p),
             "S_l": scoring.length_score(p["length"], p.get("words", 0)),
             "truncated": bool(p.get("truncated")), "capped": bool(p.get("capped")),
             "repetition": p.get("repetition", 0.0),
             "status": p.get("status", "done")} for p in preds]
    return pd.DataFrame(rows)


def paired_words(preds_by_model: dict, base: str = "base"):
    """Words per prompt of every model beside ``base``'s (prompts in ``base``'s order).

    A handful of prompts can differ tenfold in length, so a mean alone says little; the pairs
    show whether a model wrote more on most prompts or on one. Returns (table, longer):
    ``longer[name]`` counts the prompts where ``name`` wrote more words than ``base``. Beside
    each model's words the table has ``<name>_usable``, its usable words (``answer_usable_words``:
    those before the answer degenerates into loops or salad).
    """
    import pandas as pd

    words = {name: {p["id"]: p.get("words", 0) for p in preds}
             for name, preds in preds_by_model.items()}
    if base not in words:
        raise LwError(f"no predictions named {base!r}; have {sorted(words)}.")
    columns = {}
    for name, preds in preds_by_model.items():
        columns[name] = words[name]
        columns[f"{name}_usable"] = {p["id"]: records.answer_usable_words(p) for p in preds}
    ids = [p["id"] for p in preds_by_model[base]]
    table = pd.DataFrame({"length": {p["id"]: p["length"] for p in preds_by_model[base]},
                          **columns}).loc[ids]
    longer = {name: int((table[name] > table[base]).sum()) for name in words if name != base}
    return table, longer


def results(preds: list[Answer], judgements: list[Judgement] | None = None) -> dict:
    """LongBench-Write results for one model.

    Args:
        preds: records from ``predict`` (failed ones count as empty answers: S_l = 0).
        judgements: records from ``lw.judge.judge`` (None: no quality score).

    Returns:
        dict with S, S_l, S_q, per-bucket S_l and S_q (``S_l[<bucket>]``), per-dimension
        scores, n, truncated, capped (replies whose budget the context lowered), failed, mean_words, mean_usable_words (``answer_usable_words``; None
        where no response text was kept), and the judge's coverage (%), ``judge_pending`` (items
        it gave no answer for yet: rerun the judge), mode, protocol and
        ``judge_answers_cut`` (answers the judge saw cut by ``max_answer_chars``; None where
        the judgements predate that record).
    """
    table = length_table(preds)
    out = {"n": len(table), "S_l": _mean(table["S_l"]), "truncated": int(table["truncated"].sum()),
           "capped": int(table["capped"].sum()),
           "failed": int((table["status"] != "done").sum()),
           "mean_words": _mean(table["words"]),
           "mean_usable_words": _mean(table["usable_words"]), "scorer_version": scoring.VERSION}
    for _, _, label in scoring.BUCKETS:
        out[f"S_l{label}"] = _mean(table.loc[table["bucket"] == label, "S_l"])
    out.update(quality(judgements, {p["id"]: scoring.bucket(p["length"]) for p in preds})
               if judgements is not None else {"S_q": None, "judge_coverage": None,
                                               "judge_pending": None, "judge_answers_cut": None})
    out["S"] = scoring.overall(out["S_l"], out["S_q"])
    return out


def quality(judgements: list[Judgement], buckets: dict[str, str] | None = None) -> dict:
    """S_q from judge records: each dimension's mean rating m -> (m - 1) * 25, S_q = their mean.
    Items the judge never scored are left out of the means and counted in ``judge_coverage``;
    ``judge_pending`` counts those it gave no answer for yet (transport failures: rerun the
    judge), ``judge_answers_cut`` the answers the judge saw only in part (``answer_cut``)."""
    scored = [j for j in judgements if j.get("scores")]
    # Judgements stored before the judge recorded cuts (it cut at 60,000 characters, silently)
    # cannot say: None, not 0.
    unknown = any(j.get("scores") and "answer_cut" not in j for j in judgements)
    out = {"judge_coverage": round(100.0 * len(scored) / len(judgements), 1) if judgements
           else None, "judge_pending": sum(1 for j in judgements if j.get("pending")),
           "judge_mode": sorted({j.get("mode", "?") for j in judgements}),
           "judge_protocol": sorted({j.get("protocol", "kit") for j in judgements}),
           "judge_answers_cut": None if unknown else sum(1 for j in judgements
                                                         if j.get("answer_cut"))}
    dims = {d: scoring.dimension_score(sum(j["scores"][d] for j in scored) / len(scored))
            if scored else None for d in scoring.DIMENSIONS}
    out.update({f"q:{d}": v for d, v in dims.items()})
    out["S_q"] = _mean(list(dims.values())) if scored else None
    for _, _, label in scoring.BUCKETS:
        part = [j for j in scored if buckets and buckets.get(j["id"]) == label]
        out[f"S_q{label}"] = (_mean([scoring.dimension_score(sum(j["scores"][d] for j in part)
                                                             / len(part))
                                     for d in scoring.DIMENSIONS]) if part else None)
    return out


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float)
                                                              and math.isnan(v))]
    return round(sum(vals) / len(vals), 2) if vals else None


def results_table(results_by_model: dict, label: str = ""):
    """One row per model: S, S_l, S_q, per-bucket and per-dimension scores, coverage, counts."""
    import pandas as pd

    return pd.DataFrame([{"model": name, "source": label, **res}
                         for name, res in results_by_model.items()])


def save_results(table, name: str, benchmark: str, judge_prompt: str | None = None):
    """Write ``table`` to ``data/results/<name>.csv`` and ``.json``, the JSON stamped with the
    versions that produced it (scorer, evaluation code, judge prompt, benchmark file and commit).
    Returns the CSV path."""
    import json

    from lw import paths
    from lw.paper import benchmarks

    folder = paths.home() / "data" / "results"
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"{name}.csv"
    table.to_csv(csv, index=False)
    meta = {"scorer_version": scoring.VERSION, "evaluate_version": VERSION,
            "judge_prompt": judge_prompt, "benchmark": benchmark,
            "benchmark_sha256": benchmarks.FILES[benchmark][0].sha256,
            "benchmark_commit": benchmarks.COMMIT,
            "rows": json.loads(table.to_json(orient="records"))}
    (folder / f"{name}.json").write_text(json.dumps(meta, indent=1))
    return csv


def run_model(spec: str, rows: list[Prompt], folder, batch_size: int = 8,
              load_options: dict | None = None, **settings):
    """Load ``spec`` and predict ``rows`` into a file under ``folder`` named by model, load
    options and settings (so reruns resume). ``agentwrite:<spec>`` writes with AgentWrite on
    that model (sequential, scaffolded plans where needed). ``load_options`` go to
    ``lw.llm.load`` (e.g. ``lw.llm.paper_options(spec)``: prompt_format, trust_remote_code).

    The model is loaded through ``lw.llm.lifecycle.use``: the model loaded there before (by an
    earlier ``run_model``, say) is closed first, so two vLLM servers never share the GPU, and the
    same spec with the same options reuses the loaded one. Returns (model, predictions)."""
    from lw.agentwrite import AgentWriteConfig, predict_agentwrite
    from lw.llm import lifecycle
    from lw.store import keyed_path

    load_options = dict(load_options or {})
    # Only options that are set name the file, so runs from before they existed still resume.
    identity = {"load": load_options} if load_options else {}
    identity.update(_served_weights(model=spec))
    model = lifecycle.use(spec.removeprefix("agentwrite:"), batch_size, **load_options)
    if spec.startswith("agentwrite:"):
        config = AgentWriteConfig(temperature=settings.get("temperature", 0.8),
                                  repetition_penalty=settings.get("repetition_penalty", 1.1),
                                  seed=settings.get("seed", 0), retry_short=1)
        path = keyed_path(folder, "agentwrite", model=spec, **identity, **vars(config))
        return model, predict_agentwrite(model, rows, path, config)
    path = keyed_path(folder, "preds", model=spec, **identity, **settings)
    return model, predict(model, rows, path, **settings)


def run_models(models, rows: list[Prompt], folder, batch_size: int = 8,
               load_options: dict | None = None, judge: str | None = None,
               judge_mode: str = "auto", judge_protocol: str = "kit",
               judge_max_chars: int | None = None, judge_settings: dict | None = None,
               **settings) -> tuple[dict, dict]:
    """Answer ``rows`` with each model (``run_model``) and judge every model's answers
    (``lw.judge.judge``), with one model loaded at a time (``lw.llm.lifecycle``): on one GPU a
    vLLM server claims 90% of its memory, so a second one would not fit beside it.

    The order keeps loads few: with ``judge=None`` each model answers, judges its own answers
    on the same load, and is closed before the next loads. With a ``judge``, every model answers
    first, each closed after its answers (stored on disk), then the judge loads once and judges
    them all; a model with the judge's spec and options answers last, so its answers and the
    judging share one load. Nothing is left loaded at the end.

    Args:
        models: specs, or ``{name: spec}``; results are keyed by name (a list: by spec).
        rows, folder, batch_size, settings: as ``run_model`` (``settings``: generation).
        load_options: ``{spec: lw.llm.load options}`` for models and judge (missing: none).
        judge: the judge's spec; None: each model judges itself (an ``agentwrite:<spec>`` by
            the model that wrote for it).
        judge_mode, judge_protocol, judge_max_chars: ``lw.judge.judge``'s mode, protocol and
            max_answer_chars; ``judge_settings``: its retries, temperature, max_new_tokens.

    Returns:
        (predictions, judgements), each ``{name: records}`` in the order of ``models``.
    """
    import json

    from lw.judge import judge as judge_answers
    from lw.llm import lifecycle
    from lw.store import answers_digest, keyed_path

    named = dict(models) if isinstance(models, dict) else {spec: spec for spec in models}
    load_options = load_options or {}

    def loading(spec):  # what lifecycle.use is given for spec: equal pairs share one load
        plain, options = spec.removeprefix("agentwrite:"), load_options.get(spec, {})
        return plain, json.dumps(options, sort_keys=True, default=repr)

    judge_key = loading(judge) if judge else None
    # Models sharing the judge's load answer last, so the judge starts where they stopped.
    order = sorted(named, key=lambda name: loading(named[name]) == judge_key)
    steps = [f"{name} answers" + ("" if judge else " and judges itself") for name in order]
    if judge and order and loading(named[order[-1]]) == judge_key:
        steps[-1] += f", then judges all on the same load ({judge})"
    elif judge:
        steps.append(f"then {judge} loads and judges all")
    print("[lw] one model loaded at a time: " + "; ".join(steps))

    preds, judged = {}, {}

    def judge_one(name, judge_model):
        spec = named[name]
        path = keyed_path(folder, "judge", model=spec, judge=judge_model, mode=judge_mode,
                          protocol=judge_protocol, max_chars=judge_max_chars,
                          load=load_options.get(spec, {}), **settings,
                          **({"judge_settings": judge_settings} if judge_settings else {}),
                          # the answers themselves: judgements never meet other answers
                          answers=answers_digest(preds[name]),
                          **_served_weights(model=spec, judge=judge_model.spec))
        judged[name] = judge_answers(judge_model, preds[name], path, mode=judge_mode,
                                     protocol=judge_protocol, max_answer_chars=judge_max_chars,
                                     **(judge_settings or {}))

    try:
        for name in order:
            spec = named[name]
            model, preds[name] = run_model(spec, rows, folder, batch_size,
                                           load_options=load_options.get(spec), **settings)
            if judge is None:
                judge_one(name, model)  # the loaded model: no second load
        if judge is not None:
            # The last model's load where it is the judge's (same spec and options).
            judge_model = lifecycle.use(judge.removeprefix("agentwrite:"), batch_size,
                                        **load_options.get(judge, {}))
            for name in named:
                judge_one(name, judge_model)
    finally:
        lifecycle.release()  # the GPU is free for what comes next (training, another notebook)
    return {n: preds[n] for n in named}, {n: judged[n] for n in named}


def _served_weights(**specs) -> dict:
    """``keyed_path`` names the weights of ``hf:<folder>`` specs in file names, so a retrained
    checkpoint does not resume old results; the same checkpoint served as ``vllm:<folder>``
    gets the same here (``<key>_weights``)."""
    from lw.llm import weights_version

    out = {}
    for key, spec in specs.items():
        plain = str(spec).removeprefix("agentwrite:")
        if plain.startswith("vllm:"):
            version = weights_version("hf:" + plain.removeprefix("vllm:"))
            if version is not None:
                out[f"{key}_weights"] = version
    return out


def main(argv=None) -> int:
    """``python -m lw.longbench``: notebook 03 from the command line (its profile's defaults)."""
    import argparse

    import lw.llm
    from lw import paths, profiles
    from lw.paper import benchmarks

    ap = argparse.ArgumentParser(prog="python -m lw.longbench",
                                 description=__doc__.split("\n\n")[0])
    profiles.add_run_arguments(ap, "longbench_write")
    ap.add_argument("--judge", help="judge spec (default: each model judges itself)")
    ap.add_argument("--judge-protocol", choices=("kit", "official"), default="kit")
    ap.add_argument("--benchmark", choices=tuple(benchmarks.FILES)[:2])
    args = ap.parse_args(argv)
    size = profiles.resolve_size(args.size)
    p = profiles.get("03", size)
    released = ([profiles.full_model(m) for m in lw.llm.RELEASED] if p.released_models
                else None)
    models = args.model or released or [size.model]
    benchmark = args.benchmark or p.benchmark
    rows = benchmarks.subset(benchmarks.load(benchmark), n=args.prompts or p.n_prompts,
                             seed=args.seed, max_length=p.max_length)
    folder = args.out or paths.run_dir(size.name) / "longbench_write"
    preds, judged = run_models(models, rows, folder, size.batch_size,
                               load_options={s: size.options(s) for s in models},
                               judge=args.judge, judge_protocol=args.judge_protocol,
                               max_new_tokens=args.max_new_tokens or p.max_new_tokens,
                               temperature=args.temperature, seed=args.seed)
    table = results_table({s: results(preds[s], judged[s]) for s in models},
                          label=f"{benchmark}, {len(rows)} prompts")
    cols = ["model", "S", "S_l", "S_q", "mean_words", "judge_coverage", "truncated", "failed"]
    print(table[cols].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
