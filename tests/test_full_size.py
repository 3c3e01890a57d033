"""The `full` size picks its generator by what the machine has: vLLM on a kit-managed server
where vLLM and CUDA are present, else the kit's own engine, saying why."""

import lw.llm.vllm_backend
from lw import paths


def test_full_size_generates_with_vllm_where_it_can_run(monkeypatch):
    monkeypatch.setattr(lw.llm.vllm_backend, "vllm_available", lambda: None)
    assert paths.resolve_size("full").model == f"vllm:{paths.FULL_MODEL}"


def test_full_size_without_vllm_says_why_and_uses_the_kits_engine(monkeypatch, capsys):
    monkeypatch.setattr(lw.llm.vllm_backend, "vllm_available",
                        lambda: "vLLM is not installed: pip install 'lw[gpu]'")
    assert paths.resolve_size("full").model == f"hf:{paths.FULL_MODEL}"
    out = capsys.readouterr().out
    assert "without vLLM" in out and "pip install 'lw[gpu]'" in out


def test_a_model_chosen_for_the_full_size_is_kept(monkeypatch):
    monkeypatch.setattr(lw.llm.vllm_backend, "vllm_available", lambda: None)
    assert paths.resolve_size("full", model="hf:my/model").model == "hf:my/model"
    assert paths.resolve_size("small").model == "smollm2-135m"


def test_the_full_sizes_vllm_model_can_be_fine_tuned_from_its_weights():
    from lw.sft.train import model_path

    assert model_path(f"vllm:{paths.FULL_MODEL}") == model_path(f"hf:{paths.FULL_MODEL}")
