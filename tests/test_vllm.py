"""vLLM: a clean, explained refusal without CUDA; a real generation where a GPU is present."""

import pytest

import lw
from lw.errors import LwError
from lw.llm.vllm_backend import vllm_available


@pytest.mark.skipif(vllm_available() is None, reason="vLLM can run here")
def test_without_gpu_or_vllm_load_says_why():
    with pytest.raises(LwError, match="cannot load vllm:.*(CUDA|pip install)"):
        lw.llm.load("vllm:HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.mark.gpu
@pytest.mark.skipif(vllm_available() is not None, reason=str(vllm_available()))
def test_vllm_generates_with_and_without_prefix():
    from lw.llm.embedded import smollm2_dir

    model = lw.llm.load(f"vllm:{smollm2_dir()}", gpu_memory_utilization=0.3)
    outs = model.generate(["Say hi.", "Plan an essay."], prefix=[None, "Paragraph 1 -"],
                          max_new_tokens=8)
    assert all(o.completion_tokens > 0 for o in outs)
