"""The controlled experiment's subsets (cut, filter, fill) and its runner's shape of results."""

import dataclasses
from pathlib import Path

import pytest

import lw
from lw import controlled, stats, text
from lw.errors import LwError
from lw.llm.fake import ScriptedChatModel
from lw.sft.train import TrainResult


def conv(answer: str, prompt: str = "Write about rivers.") -> dict:
    return {"messages": [{"role": "user", "content": prompt},
                         {"role": "assistant", "content": answer}]}


def essay(paragraphs: int, words: int = 30, tag: str = "river") -> str:
    """Paragraphs of ``words`` words each, sentences of ten words, headed by a title line."""
    sentence = " ".join([tag] * 9) + " ends."
    body = [" ".join([sentence] * (words // 10)) for _ in range(paragraphs)]
    return "# A title\n\n" + "\n\n".join(body)


def distinct_words(n: int) -> str:
    """``n`` different words (clean prose for lw.text.usable_words, which cuts loops)."""
    return " ".join(chr(97 + k // 26) + chr(97 + k % 26) + "z" for k in range(n))


def test_cut_answer_keeps_whole_paragraphs_under_the_cap():
    answer = essay(5)  # 2 title words + 5 x 30
    for cap in (40, 70, 100, 151):
        cut, how = controlled.cut_answer(answer, cap)
        assert how == "paragraph" and answer.startswith(cut)
        assert text.count_words(cut) <= cap
        assert text.count_words(cut) > cap - 30  # the next paragraph would not have fitted
        assert answer[len(cut):].startswith("\n\n")  # cut at a boundary, not mid-paragraph
    assert controlled.cut_answer(answer, 152) == (answer, "whole")


def test_cut_answer_falls_back_to_sentences_then_words_and_never_ends_on_a_heading():
    answer = essay(2, words=60)
    cut, how = controlled.cut_answer(answer, 25)  # the first paragraph (60 words) is too long
    assert how == "sentence" and cut.endswith("ends.") and text.count_words(cut) == 22
    cut, how = controlled.cut_answer("# Title\n\n" + "word " * 50, 10)
    assert how == "words" and text.count_words(cut) == 10
    cut, how = controlled.cut_answer("Intro line here.\n\n## Heading two\n\n" + "x " * 40, 6)
    assert how == "paragraph" and cut == "Intro line here."
    cut, _ = controlled.cut_answer("这是第一句。这是第二句！第三句还没有完", 12)
    assert cut == "这是第一句。这是第二句！"
    with pytest.raises(LwError, match="positive"):
        controlled.cut_answer("some words", 0)


def test_cut_design_gives_every_cap_the_same_conversations_cut_to_it():
    pool = [conv(essay(6, tag=chr(97 + i) * 3), prompt=f"p{i}") for i in range(6)]
    pool += [conv("A short answer.", prompt="short")]  # not longer than the largest cap: left out
    subsets = controlled.make_subsets(pool, [50, 100, 150], design="cut", n=4, seed=1)
    prompts = {cap: [c["messages"][0]["content"] for c in convs] for cap, convs in subsets.items()}
    assert prompts[50] == prompts[100] == prompts[150] and len(prompts[50]) == 4
    assert "short" not in prompts[50]
    for cap, convs in subsets.items():
        assert all(controlled.answer_words(c) <= cap for c in convs)
        assert all(c["cut"] == "paragraph" and c["original_words"] == 182 for c in convs)
    table = controlled.describe(subsets)
    assert table["data_mean_words"].tolist() == [32.0, 92.0, 122.0]
    assert table["cut_paragraph"].tolist() == [4, 4, 4]
    assert (table["fill"] <= 1).all()
    with pytest.raises(LwError, match="longer than the largest cap"):
        controlled.make_subsets(pool, [50, 500], design="cut")


def test_filter_and_fill_designs_draw_equal_sizes_within_their_bounds():
    pool = [conv(" ".join(["w"] * k)) for k in range(10, 400, 10)]
    filt = controlled.make_subsets(pool, [100, 300], design="filter")
    assert {len(v) for v in filt.values()} == {10}  # the tightest cap has 10 answers
    assert all(controlled.answer_words(c) <= 100 for c in filt[100])
    assert filt == controlled.cap_subsets(pool, [100, 300])
    fill = controlled.make_subsets(pool, [100, 300], design="fill", fill=0.5)
    assert {len(v) for v in fill.values()} == {5}
    assert all(150 < controlled.answer_words(c) <= 300 for c in fill[300])
    with pytest.raises(LwError, match="too few"):
        controlled.make_subsets(pool, [100, 300], design="fill", n=20)
    for bad in (dict(caps=[100]), dict(caps=[100, 300], design="trim"),
                dict(caps=[100, 300], fill=1.5)):
        with pytest.raises(LwError):
            controlled.make_subsets(pool, **bad)


def test_run_trains_one_model_per_cap_and_seed_and_lines_answers_up_for_the_interval(
        tmp_path, monkeypatch):
    trained, loaded, sampled = [], [], []

    def fake_train(recipe, data, progress=True):
        folder = Path(recipe.train.output_dir)
        trained.append((folder.name, recipe.train.seed, max(
            controlled.answer_words(c) for c in data)))
        return TrainResult(model_dir=folder / "final", output_dir=folder,
                                               stats={"train_seconds": 1.0}, log_history=[])

    def fake_load(spec, batch_size=8):
        cap = int(spec.split("cap-")[1].split("-")[0])
        loaded.append(spec)
        # A model that writes about as long as its cap, longer for longer prompts.
        return ScriptedChatModel(lambda c, p: distinct_words(cap // 10 + len(c[-1]["content"])),
                                 spec=spec)

    real_predict = lw.generation.predict

    def predict(model, rows, path, **kw):
        sampled.append(kw["seed"])
        return real_predict(model, rows, path, **kw)

    monkeypatch.setattr(lw.sft, "train", fake_train)
    monkeypatch.setattr(lw.llm, "load", fake_load)
    monkeypatch.setattr(lw.generation, "predict", predict)
    pool = [conv(essay(6, tag=chr(97 + i) * 3), prompt=f"p{i}") for i in range(3)]
    subsets = controlled.make_subsets(pool, [50, 150], design="cut")
    prompts = [{"id": str(i), "prompt": "x " * i, "length": 1000} for i in range(1, 5)]
    recipe = {"model": "tiny-random", "stage": "sft", "data": {"train": "unused.jsonl"},
              "train": {"output_dir": str(tmp_path / "unused")}}
    result = controlled.run(subsets, recipe, prompts, tmp_path, max_new_tokens=400,
                            seeds=[3, 4], progress=False, seed=99, temperature=0.5)
    assert [(t[0], t[1]) for t in trained] == [("cap-50-seed-3", 3), ("cap-50-seed-4", 4),
                                             ("cap-150-seed-3", 3), ("cap-150-seed-4", 4)]
    assert [t[2] for t in trained] == [32, 32, 122, 122]  # each cap's data, cut to it
    assert sampled == [3, 4, 3, 4]  # each model samples with its training seed, not seed=99
    assert set(result.preds) == {50, 150} and all(len(v) == 2 for v in result.preds.values())
    assert result.table["seeds"].tolist() == [2, 2] and len(result.per_seed) == 4
    assert result.table["mean_words"].tolist() == [10.0, 20.0]
    caps, y = stats.values_by_cap(result.preds, "usable_words")
    assert caps == [50, 150] and y.shape == (4, 2, 2)
    rho = stats.spearman(caps, y, seeds="crossed")
    assert rho["estimate"] > 0 and stats.verdict(rho) == "too few prompts (4) for an interval"
    # Resumable: on a rerun the answers come back from the stores; models that could only fail
    # are never asked.
    monkeypatch.setattr(lw.llm, "load", lambda spec, batch_size=8: ScriptedChatModel(
        lambda c, p: RuntimeError("asked again"), spec=spec))
    again = controlled.run(subsets, recipe, prompts, tmp_path, max_new_tokens=400, seeds=[3, 4],
                           progress=False, temperature=0.5)
    assert again.table.equals(result.table)
    with pytest.raises(LwError, match="distinct"):
        controlled.run(subsets, recipe, prompts, tmp_path, max_new_tokens=400, seeds=[1, 1])


def test_run_trains_with_the_sizes_options_under_the_callers(tmp_path, monkeypatch):
    import torch

    precisions = []

    def fake_train(recipe, data, progress=True):
        precisions.append(recipe.train.bf16)
        folder = Path(recipe.train.output_dir)
        return TrainResult(model_dir=folder / "final", output_dir=folder, stats={},
                           log_history=[])

    monkeypatch.setattr(lw.sft, "train", fake_train)
    monkeypatch.setattr(lw.llm, "load", lambda spec, batch_size=8, **options: ScriptedChatModel(
        lambda c, p: distinct_words(20), spec=spec))
    monkeypatch.setenv("LW_CPU_BF16", "1")
    small = dataclasses.replace(lw.profiles.resolve_size("small"), cpu_bf16_train=True)
    pool = [conv(essay(6, tag=chr(97 + i) * 3), prompt=f"p{i}") for i in range(3)]
    subsets = controlled.make_subsets(pool, [50, 150], design="cut")
    prompts = [{"id": "1", "prompt": "x", "length": 100}]
    recipe = {"model": "smollm2-135m", "stage": "sft", "data": {"train": "unused.jsonl"},
              "train": {"output_dir": str(tmp_path / "unused"), "bf16": False}}
    controlled.run(subsets, recipe, prompts, tmp_path / "a", max_new_tokens=8, progress=False,
                   size=small, overrides={"model": "smollm2-135m"})
    # a size that asks for it, on a CPU with bf16 instructions, trains in bf16 autocast
    assert precisions == [not torch.cuda.is_available()] * 2
    controlled.run(subsets, recipe, prompts, tmp_path / "b", max_new_tokens=8, progress=False,
                   size=small, overrides={"model": "smollm2-135m", "bf16": False})
    assert precisions[2:] == [False, False]  # the caller's value beats the size's


def test_full_takes_the_papers_data_and_a_short_pool_says_what_to_add():
    # at full the largest cap is 4,000 words: the kit's own instructions rarely ask for that many
    full = lw.profiles.get("06", lw.profiles.resolve_size("full", model="hf:x"))
    assert full.pool == ("hub:THUDM/LongWriter-6k",) and max(full.caps) == 4000
    assert lw.profiles.get("06", lw.profiles.resolve_size("small")).pool == ()
    pool = [conv("word " * 300) for _ in range(3)]
    with pytest.raises(LwError, match="add a pool with long answers .*LongWriter-6k"):
        controlled.make_subsets(pool, list(full.caps), design="cut")
