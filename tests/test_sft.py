"""lw.sft: assistant-only labels, packing isolation, loss weighting, training, LoRA, DPO, recipes.

The ``tiny`` fixture model is fp32 on CPU and bf16 on CUDA: tensors go to its device, logits are
compared within ``tolerance`` (bf16 kernels round at different points: measured up to 0.008 on
logits of size 1.3, against 0.71 for a leak across packed conversations), and training recipes
use bf16 on CUDA (fp32 weights, bf16 autocast), as the GPU recipes do.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lw.data import pairs as preference
from lw.errors import LwError
from lw.sft import (
    Collator,
    block_causal_mask,
    dpo,
    load_recipe,
    pack,
    tokenize,
    tokenize_one,
    train,
    weighted_loss,
)
from lw.sft.tokens import IGNORE, Example

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "recipes").glob("*/*/config_*.yaml"))
CUDA = torch.cuda.is_available()


def device_of(model):
    return next(model.parameters()).device


def tolerance(model) -> float:
    return 1e-4 if next(model.parameters()).dtype == torch.float32 else 3e-2


def conv(user, reply, system=None):
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def targets(ex, tok):
    return tok.decode([t for t, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != IGNORE])


# -- tokenization -------------------------------------------------------------------------------
def test_labels_cover_only_the_assistant_reply_on_the_real_chat_template(tiny):
    tok = tiny.tokenizer
    ex = tokenize_one(conv("Name a colour.", "Blue is a calm colour."), tok)
    assert targets(ex, tok) == "Blue is a calm colour.<|im_end|>\n"
    rendered = tok.decode(ex.input_ids)
    assert "Name a colour." in rendered and "<|im_start|>assistant\n" in rendered
    assert ex.labels[: rendered.index("Blue") // 8] == [IGNORE] * (rendered.index("Blue") // 8)


def test_every_assistant_turn_of_a_multi_turn_conversation_is_a_target(tiny):
    tok = tiny.tokenizer
    messages = conv("Hi.", "Hello there.") + [{"role": "user", "content": "And again?"},
                                              {"role": "assistant", "content": "Hello again."}]
    text = targets(tokenize_one(messages, tok), tok)
    assert text == "Hello there.<|im_end|>\nHello again.<|im_end|>\n"
    assert "And again?" not in text


def test_a_template_that_rewrites_earlier_turns_is_refused(tiny):
    class Rewriting:
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return f"[{len(messages)} turns] " + " | ".join(m["content"] for m in messages)

        def __call__(self, text, add_special_tokens):
            return {"input_ids": [ord(c) for c in text]}

    with pytest.raises(LwError, match="prefixes"):
        tokenize_one(conv("a", "b"), Rewriting())


def test_conversation_without_assistant_is_an_error(tiny):
    with pytest.raises(LwError, match="assistant"):
        tokenize_one([{"role": "user", "content": "hello"}], tiny.tokenizer)


def test_overlong_conversations_are_dropped_or_truncated_and_counted(tiny):
    convs = [conv("short", "ok"), conv("long", "word " * 300)]
    kept, stats = tokenize(convs, tiny.tokenizer, max_length=120, overflow="drop")
    assert (len(kept), stats.dropped_too_long, stats.truncated) == (1, 1, 0)
    kept, stats = tokenize(convs, tiny.tokenizer, max_length=120, overflow="truncate")
    assert (len(kept), stats.dropped_too_long, stats.truncated) == (2, 0, 1)
    assert max(len(e) for e in kept) == 120
    with pytest.raises(LwError, match="overflow"):
        tokenize(convs, tiny.tokenizer, max_length=120, overflow="silently")


def test_pack_fills_rows_without_exceeding_the_limit_or_losing_examples():
    exs = [Example([1] * n, [1] * n) for n in (70, 50, 40, 30, 20, 10, 90)]
    rows = pack(exs, max_length=100)
    assert all(sum(len(e) for e in row) <= 100 for row in rows)
    assert sorted(len(e) for row in rows for e in row) == sorted(len(e) for e in exs)
    assert len(rows) == 4  # 90+10, 70+30, 50+40, 20: first-fit decreasing
    with pytest.raises(LwError, match="does not fit"):
        pack([Example([1] * 101, [1] * 101)], max_length=100)


# -- packing isolation --------------------------------------------------------------------------
def three_conversations(tok):
    exs, _ = tokenize([conv("First question?", "A first answer that is fairly long. " * 3),
                       conv("Second?", "Second answer."),
                       conv("Third one here.", "Third answer, middling length.")], tok, 512)
    return exs


def alone_vs_packed(model, exs, batch):
    """(seq, row, logits alone, its positions in the batch) for rows [exs, exs[1:]]."""
    with torch.no_grad():
        for row, seqs in ((0, range(3)), (1, range(3, 5))):
            for seq in seqs:
                ex = exs[seq if row == 0 else seq - 2]
                ids = torch.tensor([ex.input_ids], device=device_of(model))
                yield seq, row, model(input_ids=ids).logits[0], batch["seq_ids"][row] == seq


def on_device(batch, model):
    return {k: v.to(device_of(model)) for k, v in batch.items()}


def test_a_conversation_has_the_same_logits_alone_and_packed(tiny):
    tok, model = tiny.tokenizer, tiny.model
    exs = three_conversations(tok)
    dtype = next(model.parameters()).dtype  # SDPA wants the additive mask in the model's dtype
    batch = Collator(tok.pad_token_id, mask_dtype=dtype)([exs, exs[1:]])  # 3 and 2 packed
    assert batch["attention_mask"].shape == (2, 1, batch["input_ids"].shape[1],
                                             batch["input_ids"].shape[1])
    batch = on_device(batch, model)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits
        leaky = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                      attention_mask=(batch["seq_ids"] >= 0).long()).logits
    for seq, row, alone, where in alone_vs_packed(model, exs, batch):
        assert torch.allclose(packed[row][where], alone, atol=tolerance(model))
        if seq not in (0, 3):  # later conversations see earlier ones without the mask
            assert (leaky[row][where] - alone).abs().max() > 0.1


def test_segment_attention_isolates_packed_conversations_without_a_mask(tiny):
    from lw.sft import segments

    tok, model = tiny.tokenizer, tiny.model
    exs = three_conversations(tok)
    batch = Collator(tok.pad_token_id, isolate="segments")([exs, exs[1:]])
    assert "attention_mask" not in batch
    pads = batch["seq_ids"][1] < 0
    assert pads.any() and (batch["position_ids"][1][pads] > 0).all()  # padding joins the last
    batch = on_device(batch, model)
    try:
        model.set_attn_implementation(segments.register())
        with torch.no_grad():
            packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
    finally:
        model.set_attn_implementation("sdpa")
    for _, row, alone, where in alone_vs_packed(model, exs, batch):
        assert torch.allclose(packed[row][where], alone, atol=tolerance(model))


def test_segment_attention_refuses_rows_it_cannot_cut():
    from lw.sft.segments import segment_attention

    q = torch.zeros(1, 2, 3, 4)
    with pytest.raises(LwError, match="position_ids"):
        segment_attention(torch.nn.Module(), q, q, q, None)
    with pytest.raises(LwError, match="start at 0"):
        segment_attention(torch.nn.Module(), q, q, q, None, position_ids=torch.tensor([[1, 2, 3]]))


def test_block_mask_lets_tokens_see_only_earlier_tokens_of_their_conversation():
    seq_ids = torch.tensor([[0, 0, 1, 1, 1, -1]])
    allowed = block_causal_mask(seq_ids)[0, 0] == 0
    assert allowed[1, 0] and not allowed[0, 1]  # causal
    assert not allowed[2, 1] and allowed[4, 2]  # no attention across the boundary
    assert allowed[5].tolist() == [False] * 5 + [True]  # padding sees itself only


# -- loss weighting -----------------------------------------------------------------------------
def test_token_and_sequence_weighting_differ_as_described():
    torch.manual_seed(0)
    vocab = 11
    # One row packing a short conversation (2 target tokens) and a long one (8 target tokens).
    seq_ids = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]])
    labels = torch.tensor([[IGNORE, 3, 4, IGNORE, 1, 2, 3, 4, 5, 6, 7, 8]])
    logits = torch.randn(1, 12, vocab)
    logits[0, 0:2, :] = 0.0  # the short answer is predicted uniformly: high loss
    logits[0, 3:11, :] = -20.0
    logits[0, 3:11].scatter_(1, labels[0, 4:12, None], 20.0)  # the long one almost perfectly
    ce = torch.nn.functional.cross_entropy
    short = ce(logits[0, 0:2], labels[0, 1:3], reduction="none")
    long = ce(logits[0, 3:11], labels[0, 4:12], reduction="none")
    token = weighted_loss(logits, labels, seq_ids, "token")
    sequence = weighted_loss(logits, labels, seq_ids, "sequence")
    assert torch.isclose(token, torch.cat([short, long]).mean())
    assert torch.isclose(sequence, (short.mean() + long.mean()) / 2)
    # Per-conversation averaging gives the short, badly predicted answer far more weight:
    # ln(11) over 2 of 10 tokens is 0.48 by token, 1.20 by conversation.
    assert sequence > 2 * token
    with pytest.raises(LwError):
        weighted_loss(logits, labels, seq_ids, "per-document")


# -- training -----------------------------------------------------------------------------------
DATA = [{"messages": conv(f"Question {i}: tell me about item {i}.",
                          "Item facts: it is small, it is blue, and it is useful. " * (1 + i % 3))}
        for i in range(8)]


def tiny_recipe(tmp_path, **train):
    return {"model": "tiny-random", "train": {
        "output_dir": str(tmp_path / "out"), "max_steps": 8, "per_device_train_batch_size": 2,
        "learning_rate": 1e-2, "logging_steps": 1, "save_strategy": "no", "max_length": 256,
        "seed": 0, "bf16": CUDA, **train}}


def test_training_tiny_random_changes_the_weights_and_lowers_the_loss(tmp_path, tiny):
    import lw

    result = train(tiny_recipe(tmp_path), data=DATA, progress=False)
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert losses[-1] < losses[0] - 0.5
    assert result.stats["kept"] == 8 and result.stats["packing"] and result.stats["rows"] < 8
    trained = lw.llm.load(result.spec)  # the checkpoint loads as an hf: model
    before = dict(tiny.model.named_parameters())
    changed = [n for n, p in trained.model.named_parameters()
               if not torch.equal(p, before[n])]
    assert len(changed) > 5
    again = train(tiny_recipe(tmp_path), data=DATA, progress=False)
    assert again.skipped and again.model_dir == result.model_dir
    changed_recipe = train(tiny_recipe(tmp_path, learning_rate=5e-3), data=DATA, progress=False)
    assert not changed_recipe.skipped


def test_lora_adapters_merge_into_a_model_that_reloads_with_the_same_logits(tmp_path, tiny):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import lw
    from lw.sft.config import model_path

    # Saved in fp32 so that the merged model and base + adapter compare at fp32 tolerance on
    # any device (all three are loaded on the CPU in fp32 here).
    recipe = tiny_recipe(tmp_path, loss_weighting="sequence", save_dtype="float32")
    recipe["lora"] = {"r": 4, "alpha": 8, "dropout": 0.0}
    result = train(recipe, data=DATA, progress=False)
    assert result.stats["lora"] and (result.output_dir / "adapter").is_dir()
    assert lw.llm.load(result.spec).model is not None  # the kit's loader takes it
    merged = AutoModelForCausalLM.from_pretrained(result.model_dir, dtype=torch.float32)

    def base():
        return AutoModelForCausalLM.from_pretrained(model_path("tiny-random"), dtype=torch.float32)

    with_adapter = PeftModel.from_pretrained(base(), str(result.output_dir / "adapter")).eval()
    ids = torch.tensor([tiny.tokenizer("Question 3: tell me about item 3.")["input_ids"]])
    with torch.no_grad():
        a, b = merged(input_ids=ids).logits, with_adapter(input_ids=ids).logits
        plain = base()(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, plain, atol=1e-3)  # the adapters did change something


def test_checkpoints_of_another_run_are_not_resumed(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path, save_strategy="steps", save_steps=4)
    train(recipe, data=DATA, progress=False)
    assert (tmp_path / "out" / "checkpoint-8").is_dir()
    # Same output folder, other settings: the old checkpoints must not be resumed.
    result = train(tiny_recipe(tmp_path, save_strategy="steps", save_steps=4, learning_rate=1e-3),
                   data=DATA, progress=False)
    assert result.stats["resumed_from"] is None
    assert "another run" in capsys.readouterr().out


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    recipe = tiny_recipe(tmp_path, save_strategy="steps", save_steps=4)
    train(recipe, data=DATA, progress=False)
    final = tmp_path / "out" / "final"
    for path in final.iterdir():  # as if the run had died after its last checkpoint
        path.unlink()
    final.rmdir()
    result = train(recipe, data=DATA, progress=False)
    assert result.stats["resumed_from"].endswith("checkpoint-8")


def test_no_example_fitting_max_length_is_a_clear_error(tmp_path):
    with pytest.raises(LwError, match="max_length"):
        train(tiny_recipe(tmp_path, max_length=24), data=DATA, progress=False)


def test_command_line_trains_from_a_recipe_with_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(tiny_recipe(tmp_path)))  # JSON is YAML
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in DATA))
    run = subprocess.run([sys.executable, "-m", "lw.sft", str(recipe), "--data", str(data),
                          "--set", "max_steps=2"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "lw.llm.load('hf:" in run.stdout
    assert (tmp_path / "out" / "final" / "lw_train.json").exists()
    bad = subprocess.run([sys.executable, "-m", "lw.sft", str(recipe), "--set", "nonsense=1"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and "unknown train key" in bad.stderr


# -- recipes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_every_recipe_parses(path):
    recipe = load_recipe(path)
    assert recipe.stage in ("sft", "dpo") and recipe.model
    assert recipe.train.max_length >= 1024 and recipe.train.learning_rate > 0
    if recipe.stage == "sft":
        assert recipe.data.train and recipe.train.loss_weighting in ("token", "sequence")


def test_recipes_cover_the_cpu_model_a_one_gpu_model_lora_and_dpo():
    parsed = [load_recipe(p) for p in RECIPES]
    assert any(r.model == "smollm2-135m" and not r.train.bf16 for r in parsed)
    assert any("0.5B" in r.model or "1.5B" in r.model for r in parsed)
    assert any(r.lora for r in parsed) and any(r.stage == "dpo" for r in parsed)
    configs = {p.name for p in (ROOT / "recipes" / "accelerate_configs").glob("*.yaml")}
    assert {"ddp.yaml", "deepspeed_zero3.yaml", "fsdp.yaml"} <= configs


def test_recipe_errors_name_the_problem(tmp_path):
    with pytest.raises(LwError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(LwError, match="unknown recipe key"):
        load_recipe({"model": "tiny-random", "optimiser": "adam"})
    with pytest.raises(LwError, match="no 'model'"):
        load_recipe({"train": {}})
    with pytest.raises(LwError, match="loss_weighting"):
        load_recipe({"model": "tiny-random", "train": {"loss_weighting": "doc"}})
    assert load_recipe(RECIPES[0], learning_rate=3e-4).train.learning_rate == 3e-4


# -- DPO ----------------------------------------------------------------------------------------
def sample_record(rid, k, words, reward, status="done"):
    return {"id": f"{rid}#s{k}", "source_id": rid, "prompt": f"Write about {rid}.",
            "response": "word " * words, "words": words, "reward": reward, "status": status}


def test_pairs_take_the_best_as_chosen_and_the_worst_as_rejected():
    scored = [[sample_record("a", 0, 50, 40.0), sample_record("a", 1, 400, 90.0),
               sample_record("a", 2, 10, 10.0)],
              [sample_record("b", 0, 50, 50.0), sample_record("b", 1, 52, 52.0)],
              [sample_record("c", 0, 50, 90.0, status="failed"), sample_record("c", 1, 5, 1.0)]]
    pairs = preference.make_pairs(scored, min_margin=5.0)
    assert [p["id"] for p in pairs] == ["a"]  # b: too close; c: only one usable sample
    assert (pairs[0]["chosen_words"], pairs[0]["rejected_words"]) == (400, 10)
    assert pairs[0]["prompt"][0]["role"] == "user" and pairs[0]["chosen"][0]["role"] == "assistant"


def test_dpo_pipeline_runs_on_tiny_random_and_moves_the_policy(tmp_path, tiny):
    import lw

    rows = [{"id": f"r{i}", "prompt": f"Write a {100 * (i + 1)}-word note on topic {i}.",
             "length": 100 * (i + 1)} for i in range(3)]
    samples = preference.sample(tiny, rows, tmp_path, n_samples=2, max_new_tokens=12, progress=False)
    assert [len(g) for g in samples] == [2, 2, 2]
    scored = preference.score(samples, tiny, tmp_path, progress=False)
    assert all(0 <= p["S_l"] <= 100 and p["S_q"] is not None for g in scored for p in g)
    pairs = preference.make_pairs(scored, min_margin=0.0)
    recipe = {"model": "tiny-random", "stage": "dpo", "train": {
        "output_dir": str(tmp_path / "dpo"), "max_steps": 3, "per_device_train_batch_size": 2,
        "learning_rate": 1e-3, "logging_steps": 1, "save_strategy": "no", "max_length": 256}}
    result = dpo.train_dpo(recipe, pairs, progress=False)
    margins = [float(h["rewards/margins"]) for h in result.log_history if "rewards/margins" in h]
    assert margins[-1] > margins[0]
    trained = lw.llm.load(result.spec).model
    before = dict(tiny.model.named_parameters())
    assert any(not torch.equal(p, before[n]) for n, p in trained.named_parameters())
    with pytest.raises(LwError, match="stage: dpo"):
        dpo.train_dpo({**recipe, "stage": "sft", "train": {"output_dir": str(tmp_path)}}, pairs)
    with pytest.raises(LwError, match="no preference pairs"):
        dpo.train_dpo(recipe, [])
