"""The `full` size picks its generator by what the machine has: vLLM on a kit-managed server
where vLLM and CUDA are present, else the kit's own engine, saying why. Its one GPU is shared by
loading one model at a time (lw.llm.lifecycle, lw.longbench.run_models), and trained checkpoints
follow their base onto vLLM."""

import pytest

import lw.llm.vllm_backend
from lw import profiles
from lw.errors import LwError


def test_full_size_generates_with_vllm_where_it_can_run(monkeypatch):
    monkeypatch.setattr(lw.llm.vllm_backend, "vllm_available", lambda: None)
    assert profiles.resolve_size("full").model == f"vllm:{profiles.FULL_MODEL}"


def test_full_size_without_vllm_says_why_and_uses_the_kits_engine(monkeypatch, capsys):
    monkeypatch.setattr(lw.llm.vllm_backend, "vllm_available",
                        lambda: "vLLM is not installed: pip install 'lw[gpu]'")
    assert profiles.resolve_size("full").model == f"hf:{profiles.FULL_MODEL}"
    out = capsys.readouterr().out
    assert "without vLLM" in out and "pip install 'lw[gpu]'" in out


def test_a_model_chosen_for_the_full_size_is_kept(monkeypatch):
    monkeypatch.setattr(lw.llm.vllm_backend, "vllm_available", lambda: None)
    assert profiles.resolve_size("full", model="hf:my/model").model == "hf:my/model"
    assert profiles.resolve_size("small").model == "smollm2-135m"


def test_the_full_sizes_vllm_model_can_be_fine_tuned_from_its_weights():
    from lw.sft.config import model_path

    assert model_path(f"vllm:{profiles.FULL_MODEL}") == model_path(f"hf:{profiles.FULL_MODEL}")


# One GPU shared by design: one model loaded at a time, the judge reusing the model under test.

ROWS = [{"id": f"r{i}", "prompt": f"Write {n} words.", "length": n} for i, n in enumerate([3, 7])]


class Recorder:
    """Loads models with lw.llm.load and records each load and close, in order."""

    def __init__(self):
        self.events = []

    def __call__(self, spec, **options):
        import lw.llm

        model = lw.llm.load(spec, **options)
        self.events.append(("load", spec))
        closing = model.close

        def close():
            self.events.append(("close", spec))
            closing()

        model.close = close
        return model


@pytest.fixture
def recorder(monkeypatch):
    from lw.llm import lifecycle

    rec = Recorder()
    monkeypatch.setattr(lifecycle, "_SLOT", lifecycle.ModelSlot(loader=rec))
    return rec


def _run(tmp_path, models, judge):
    from lw import longbench

    return longbench.run_models(models, ROWS, tmp_path, 2, judge=judge,
                               judge_settings={"retries": 1}, max_new_tokens=8)


def test_each_model_judges_itself_on_its_own_load(tmp_path, recorder):
    preds, judged = _run(tmp_path, ["fake:one two", "fake:three four"], judge=None)
    assert recorder.events == [("load", "fake:one two"), ("close", "fake:one two"),
                               ("load", "fake:three four"), ("close", "fake:three four")]
    assert {j["judge"]["spec"] for j in judged["fake:three four"]} == {"fake:three four"}
    assert list(preds) == ["fake:one two", "fake:three four"]


def test_the_judge_shares_the_load_of_the_model_it_is(tmp_path, recorder):
    """Notebook 05 with JUDGE=None: the base judges both, so it answers last, on the judge's
    load; results keep the order asked for."""
    preds, judged = _run(tmp_path, {"base": "fake:base", "SFT": "fake:tuned"}, judge="fake:base")
    assert recorder.events == [("load", "fake:tuned"), ("close", "fake:tuned"),
                               ("load", "fake:base"), ("close", "fake:base")]
    assert list(preds) == list(judged) == ["base", "SFT"]
    assert all(j["judge"]["spec"] == "fake:base" for js in judged.values() for j in js)


def test_a_separate_judge_loads_once_after_all_answers(tmp_path, recorder):
    _, judged = _run(tmp_path, ["fake:a", "fake:b"], judge="fake:judge")
    assert recorder.events == [("load", "fake:a"), ("close", "fake:a"), ("load", "fake:b"),
                               ("close", "fake:b"), ("load", "fake:judge"),
                               ("close", "fake:judge")]
    assert len(judged["fake:a"]) == len(judged["fake:b"]) == len(ROWS)


def test_rerun_resumes_answers_and_judgements(tmp_path, recorder):
    first = _run(tmp_path, ["fake:a"], judge="fake:judge")
    again = _run(tmp_path, ["fake:a"], judge="fake:judge")
    assert again == first


def test_checkpoints_follow_the_base_onto_vllm_where_it_runs(tmp_path, monkeypatch, capsys):
    from lw.llm import lifecycle

    folder = tmp_path / "final"
    folder.mkdir()
    monkeypatch.setattr(lw.llm.vllm_backend, "vllm_available", lambda: None)
    assert lifecycle.checkpoint_spec(f"hf:{folder}", like="vllm:Qwen/Q") == f"vllm:{folder}"
    assert "through vLLM" in capsys.readouterr().out
    # A base on the kit's engine keeps its checkpoint there: one engine per comparison.
    assert lifecycle.checkpoint_spec(f"hf:{folder}", like="hf:Qwen/Q") == f"hf:{folder}"
    assert "kit's engine" in capsys.readouterr().out
    # A hub id or another backend is not a trained checkpoint: left as given.
    assert lifecycle.checkpoint_spec("hf:Qwen/Q", like="vllm:Qwen/Q") == "hf:Qwen/Q"
    monkeypatch.setattr(lw.llm.vllm_backend, "vllm_available", lambda: "no CUDA GPU")
    assert lifecycle.checkpoint_spec(f"hf:{folder}", like="vllm:Qwen/Q") == f"hf:{folder}"
    assert "no CUDA GPU" in capsys.readouterr().out


def test_a_checkpoint_served_by_vllm_is_filed_by_its_weights(tmp_path):
    from lw import longbench
    from lw.llm import weights_version

    folder = tmp_path / "final"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"v1")
    first = longbench._served_weights(model=f"vllm:{folder}")
    assert first == {"model_weights": weights_version(f"hf:{folder}")} and first["model_weights"]
    (folder / "model.safetensors").write_bytes(b"v2, retrained")
    assert longbench._served_weights(model=f"vllm:{folder}") != first
    assert longbench._served_weights(model="vllm:Qwen/Q", judge="hf:x") == {}


def test_same_spec_and_options_reuse_the_loaded_model(recorder):
    from lw.llm import lifecycle

    model = lifecycle.use("fake:x", batch_size=2)
    assert lifecycle.use("fake:x", batch_size=2) is model
    assert lifecycle.use("fake:x", batch_size=4) is not model  # other options: another load
    lifecycle.release()
    lifecycle.release()
    assert recorder.events == [("load", "fake:x"), ("close", "fake:x"), ("load", "fake:x"),
                               ("close", "fake:x")] and lifecycle.held() is None


def test_batch_size_reaches_every_backend_and_a_server_takes_it_as_concurrency():
    from lw.llm import lifecycle

    loads = []
    slot = lifecycle.ModelSlot(loader=lambda spec, **options: loads.append(options) or
                               lw.llm.load("fake:x"))
    slot.use("openai:gpt-4o", 8)
    slot.use("tiny-random", 8, prompt_format="inst")
    assert loads == [{"batch_size": 8}, {"prompt_format": "inst", "batch_size": 8}]
    # What load makes of it: an openai: model's requests in flight (no TypeError, as notebooks
    # 00-05 met with a served model), and an option no backend takes is refused by name.
    served = lw.llm.load("openai:m", base_url="http://127.0.0.1:9/v1", batch_size=3, check=False)
    assert served.capabilities.concurrency == 3
    with pytest.raises(LwError, match=r"does not take the option\(s\) \['batch'\]"):
        lw.llm.load("openai:m", base_url="http://127.0.0.1:9/v1", batch=3, check=False)
