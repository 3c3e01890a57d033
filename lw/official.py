"""The paper's own prompts, as data: its judge prompt and AgentWrite's plan and write prompts.

They are fetched, never shipped: each file comes from the official repository
(github.com/THUDM/LongWriter) at a pinned commit and is checked by sha256, like the benchmark
prompts (``lw.datasets``). Where a file comes from, in order: ``$LW_DATA_DIR`` if it holds the
file (an offline copy), the cache (``data/cache/longwriter/official/``), else a download into the
cache. A file whose checksum does not match is an error, never silently replaced.

    template = lw.official.text("judge")            # the paper's judge prompt
    prompt = lw.official.render("judge", INST=request, RESPONSE=answer)

``render`` fills the ``$NAME$`` placeholders in the order the official scripts do, with
``str.replace`` one after another (``eval_quality.py``: ``$INST$`` then ``$RESPONSE$``), so a
request that itself contains ``$RESPONSE$`` is filled exactly as the paper's script fills it.

The pinned commits are those at which the files were read for this kit (2026-11-26): the judge
prompt never changed in the repository's history; the plan and write prompts are their latest
versions, both ending with the "ongoing work" sentence.
"""

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lw import paths
from lw.errors import LwError

URL = "https://raw.githubusercontent.com/THUDM/LongWriter/{commit}/{path}"


@dataclass(frozen=True)
class OfficialFile:
    """One official prompt file: where it lives, at which commit, its checksum and placeholders
    (in the order the official script fills them)."""

    path: str
    commit: str
    sha256: str
    fields: tuple[str, ...]

    @property
    def url(self) -> str:
        return URL.format(commit=self.commit, path=self.path)

    @property
    def filename(self) -> str:
        return Path(self.path).name


FILES = {
    "judge": OfficialFile("evaluation/judge.txt", "ca6ccd4dec16696d1b8c449b12901c88d4cbf442",
                          "2c423ce88a0eb6a61482f427997a3c03c4bc11fe861102895dcac45926ae1d57",
                          ("INST", "RESPONSE")),
    "plan": OfficialFile("agentwrite/prompts/plan.txt", "6090a273d6a6a4fdaf3579113f7bae43a0587a29",
                         "736ef8fe41620f525c2beb8ed7272d79d448e398db13679c09a6ba3800b89718",
                         ("INST",)),
    "write": OfficialFile("agentwrite/prompts/write.txt",
                          "3fcfdff43deceb49f7936c6bf25ad88d61df0bfa",
                          "468c47ca954a4dcd4295642ee036383f3fb741560b2fa707a6039f10be0c3c9a",
                          ("INST", "PLAN", "TEXT", "STEP")),
}


def version(name: str) -> str:
    """What results record for an official prompt: ``official:<file>@<commit[:7]>``."""
    f = _file(name)
    return f"official:{f.filename}@{f.commit[:7]}"


def locate(name: str, download: bool = True) -> Path:
    """The verified local path of official prompt ``name`` (see the module docstring)."""
    f = _file(name)
    candidates = []
    if os.environ.get("LW_DATA_DIR"):
        candidates.append(Path(os.environ["LW_DATA_DIR"]).expanduser() / f.filename)
    cached = paths.cache_dir() / "longwriter" / "official" / f.commit[:12] / f.filename
    candidates.append(cached)
    for path in candidates:
        if path.exists():
            _verify(path, f)
            return path
    if not download:
        raise LwError(f"the official {name} prompt is not at {' or '.join(map(str, candidates))}.")
    _download(f, cached)
    _verify(cached, f)
    return cached


def text(name: str) -> str:
    """The official prompt's text, verified."""
    return locate(name).read_text(encoding="utf-8")


def render(name: str, **values: str) -> str:
    """The official prompt with its ``$NAME$`` placeholders filled (official order, see above)."""
    f = _file(name)
    missing = [k for k in f.fields if k not in values]
    unknown = sorted(set(values) - set(f.fields))
    if missing or unknown:
        raise LwError(f"the official {name} prompt takes {', '.join(f.fields)}; missing "
                      f"{missing or 'none'}, unknown {unknown or 'none'}.")
    out = text(name)
    for key in f.fields:
        out = out.replace(f"${key}$", values[key])
    return out


def _file(name: str) -> OfficialFile:
    if name not in FILES:
        raise LwError(f"unknown official prompt {name!r}; the kit knows {', '.join(FILES)}.")
    return FILES[name]


def _verify(path: Path, f: OfficialFile) -> None:
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != f.sha256:
        raise LwError(f"{path} has sha256 {actual[:16]}..., not the pinned {f.sha256[:16]}... of "
                      f"{f.url}: the file is corrupt or another version. Delete it and fetch it "
                      "again from that address.")


def _download(f: OfficialFile, path: Path) -> None:
    tmp = path.with_suffix(".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(f.url, timeout=30) as resp:
            tmp.write_bytes(resp.read())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LwError(f"could not download {f.url} ({exc}). Without internet, save that file on "
                      f"another machine into {path.parent} or into $LW_DATA_DIR.") from exc
    os.replace(tmp, path)
