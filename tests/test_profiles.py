"""Each notebook's per-size settings live in one profile (lw.profiles), not in the notebooks."""

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest

from lw import paths, profiles
from lw.errors import LwError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ON_PROFILES = NOTEBOOKS


def _code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def _agentwrite_settings(profile):
    from lw.agentwrite import run_settings

    return run_settings(profile)


# Notebook -> the function it hands its whole profile to (the command beside it calls the same).
PROFILE_READERS = {"02": ("lw.agentwrite.run_settings", _agentwrite_settings)}


def test_every_notebook_has_a_profile_for_every_size():
    assert [p.stem for p in ON_PROFILES] == list(profiles.PROFILES)
    for stem, table in profiles.PROFILES.items():
        assert tuple(table) == paths.SIZES, stem
        kinds = {type(v) for v in table.values()}
        assert len(kinds) == 1 and dataclasses.is_dataclass(kinds.pop()), stem
        for number in (stem, stem[:2], f"{stem}.ipynb"):
            assert profiles.get(number, "small") is table["small"]
        assert profiles.get(stem, profiles.resolve_size("mock")) is table["mock"]


@pytest.mark.parametrize("path", ON_PROFILES, ids=lambda p: p.name)
def test_notebook_reads_its_profile_and_picks_nothing(path):
    code = _code(path)
    assert "size.pick(" not in code and ".pick(" not in code
    found = re.search(rf'(\w+) = lw\.profiles\.get\("{path.stem[:2]}", size\)', code)
    assert found, "the settings cell reads the notebook's profile"
    # Every field the notebook reads exists in its profile (a typo would only fail at run time).
    fields = {f.name for f in dataclasses.fields(profiles.get(path.stem, "mock"))}
    used = {n.attr for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name) and n.value.id == found[1]}
    assert used and used <= fields, used - fields
    # ... and every field is read: a default the notebook never reads is a setting that silently
    # does nothing (06 once ignored n_per_cap and trained on all 24 answers instead of 12). Fields
    # the notebook hands on with the whole profile count where that function's output follows
    # each of them.
    called, reader = PROFILE_READERS.get(path.stem[:2], (None, None))
    if reader is not None:
        assert any(isinstance(n, ast.Call) and ast.unparse(n.func) == called and n.args
                   and ast.unparse(n.args[0]) == found[1] for n in ast.walk(ast.parse(code))), \
            f"the notebook hands its profile to {called}"
        base = profiles.get(path.stem, "small")
        for name in fields - used:
            value = getattr(base, name)
            other = dataclasses.replace(base, **{name: value + 1 if isinstance(value, (int, float))
                                                 and not isinstance(value, bool) else "free"})
            assert reader(other) != reader(base), f"{called} ignores {name}"
            used = used | {name}
    assert fields <= used, fields - used


def test_get_names_what_exists():
    with pytest.raises(LwError, match="01_longwrite_ruler"):
        profiles.get("99", "small")
    with pytest.raises(LwError, match="01_longwrite_ruler"):
        profiles.get("01_ruler", "small")  # a number with the wrong name is not taken
    with pytest.raises(LwError, match="mock, small, full"):
        profiles.get("01", "huge")


def test_profiles_are_frozen():
    p = profiles.get("05", "mock")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_new_tokens = 1
    with pytest.raises(TypeError):
        p.sft_overrides["max_steps"] = 100  # dict fields are read-only views too
    assert profiles.get("05", "mock").sft_overrides["max_steps"] == 4


def _budgets(p) -> dict:
    return {f.name: getattr(p, f.name) for f in dataclasses.fields(p)
            if f.name.endswith("max_new_tokens") and "plan" not in f.name
            and "general" not in f.name}


def test_full_budgets_come_from_one_constant():
    # 04 has no answer budget: AgentWrite budgets each paragraph by its words (tokens_per_word).
    assert [s for s in profiles.PROFILES if not _budgets(profiles.get(s, "full"))] == \
        ["04_longwriter_data"]
    for stem in profiles.PROFILES:
        full, mock = profiles.get(stem, "full"), profiles.get(stem, "mock")
        assert set(_budgets(full).values()) <= {profiles.FULL_BUDGET}, stem
        assert set(_budgets(mock).values()) <= {profiles.MOCK_BUDGET}, stem
    # ... and the number is written once: in the constant, not in profiles nor in notebooks.
    source = (ROOT / "lw" / "profiles.py").read_text()
    assert len(re.findall(r"\b32768\b", source)) == 1
    # (Parameter comments may still tell a reader the default: code only.)
    code = {p.name: re.sub(r"#.*", "", _code(p)) for p in ON_PROFILES}
    assert not [name for name, text in code.items() if re.search(r"\b32768\b", text)]


def test_agentwrite_run_settings_take_the_profile_and_overrides():
    from lw.agentwrite import run_settings

    p = profiles.get("02", "small")
    settings, direct = run_settings(p, seed=3)
    assert settings["temperature"] == p.temperature == 0.8 and settings["seed"] == 3
    assert settings["plan_mode"] == "scaffold" and settings["scaffold_words_per_step"] == 400
    assert direct == {"max_new_tokens": p.direct_max_new_tokens, "temperature": 0.5,
                      "repetition_penalty": 1.1, "seed": 3}
    # An override wins, 0 included (no retries is the paper's way); None keeps the profile's.
    settings, direct = run_settings(p, retry_short=0, temperature=None, direct_max_new_tokens=64)
    assert settings["retry_short"] == 0 and settings["temperature"] == 0.8
    assert direct["max_new_tokens"] == 64
    with pytest.raises(LwError, match="unknown AgentWrite setting"):
        run_settings(p, temprature=1.0)


def test_a_size_can_train_with_bf16_autocast_on_a_cpu_that_has_it(monkeypatch):
    import torch

    from lw.sft import load_recipe, precision

    cpu = not torch.cuda.is_available()
    small, mock = profiles.resolve_size("small"), profiles.resolve_size("mock")
    monkeypatch.setenv("LW_CPU_BF16", "1")
    assert small.train_options() == ({"bf16": True} if cpu else {})  # on at small (the field)
    assert dataclasses.replace(small, cpu_bf16_train=False).train_options() == {}
    assert mock.train_options() == {} and small.train_options("openai:served") == {}
    # what the option makes of the small recipe: fp32 weights and AdamW state, bf16 compute
    recipe = load_recipe(paths.home() / profiles.get("05", small).sft_recipe,
                         **small.train_options())
    plan = precision.plan(recipe.train)
    assert (plan.weights, plan.compute) == ("float32", "bf16 autocast" if cpu else "fp32")
    monkeypatch.setenv("LW_CPU_BF16", "0")  # a CPU without bf16 instructions: fp32, said
    if cpu:
        with pytest.warns(UserWarning, match="local models run and train in fp32"):
            assert small.train_options() == {}


def test_small_loads_local_models_in_bf16_on_a_cpu_that_has_it(monkeypatch):
    import torch

    small, mock = profiles.resolve_size("small"), profiles.resolve_size("mock")
    monkeypatch.setenv("LW_CPU_BF16", "1")
    expect = {} if torch.cuda.is_available() else {"dtype": "bfloat16"}
    assert small.options() == expect and small.options("hf:/some/checkpoint") == expect
    assert small.options("openai:served") == {} and mock.options() == {}
    monkeypatch.setenv("LW_CPU_BF16", "0")  # a CPU without bf16 instructions: fp32, said
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="local models run and train in fp32"):
            assert small.options() == {}
    monkeypatch.delenv("LW_CPU_BF16")
    from lw.llm import cpu_bf16

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert (cpu_bf16() is None) == ("avx512_bf16" in flags or "amx_bf16" in flags)
