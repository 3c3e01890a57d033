"""The one way the kit gets a file of the paper: from the official repository
(github.com/THUDM/LongWriter) at a pinned commit, checked by sha256, never shipped.

    path = fetch.locate(fetch.Pinned("evaluation/judge.txt", COMMIT, SHA256), "judge prompt")

Where a file comes from, in order: ``$LW_DATA_DIR`` if it holds the file (an offline copy, such
as the one beside this checkout in ``../shared/data/longwriter``), the cache
(``<cache>/longwriter/<commit[:12]>/<file>``), else a download into the cache. A file whose
checksum does not match is an error, never silently replaced; a failed download leaves no part
file behind and says where to put a copy.
"""

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lw import paths
from lw.errors import LwError

# Module-level so a test can point every download at a local server.
URL = "https://raw.githubusercontent.com/THUDM/LongWriter/{commit}/{path}"


@dataclass(frozen=True)
class Pinned:
    """One file of the official repository: its path there, the commit it was read at and its
    checksum."""

    path: str
    commit: str
    sha256: str

    @property
    def url(self) -> str:
        return URL.format(commit=self.commit, path=self.path)

    @property
    def filename(self) -> str:
        return Path(self.path).name


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cached(f: Pinned) -> Path:
    """Where the cache keeps ``f`` (whether or not it is there)."""
    return paths.cache_dir() / "longwriter" / f.commit[:12] / f.filename


def locate(f: Pinned, what: str, download: bool = True) -> Path:
    """The verified local path of ``f`` (see the module docstring); ``what`` names it in errors."""
    data_dir = os.environ.get("LW_DATA_DIR")
    candidates = [Path(data_dir).expanduser() / f.filename] if data_dir else []
    candidates.append(cached(f))
    for path in candidates:
        if path.exists():
            _verify(path, f)
            return path
    where = (f"LW_DATA_DIR={data_dir} has no {f.filename}" if data_dir
             else "LW_DATA_DIR is not set")
    if not download:
        raise LwError(f"the {what} is not here ({where}; not cached at {cached(f)}).")
    _download(f, cached(f), where)
    _verify(cached(f), f)
    return cached(f)


def _verify(path: Path, f: Pinned) -> None:
    actual = sha256(path)
    if actual != f.sha256:
        raise LwError(f"{path} has sha256 {actual[:16]}..., not the pinned {f.sha256[:16]}... of "
                      f"{f.url}: the file is corrupt or another version. Delete it and fetch it "
                      "again from that address.")


def _download(f: Pinned, path: Path, where: str) -> None:
    tmp = path.with_suffix(".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(f.url, timeout=30) as resp:
            tmp.write_bytes(resp.read())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LwError(f"could not download {f.url} ({exc}); {where}. Without internet, save that "
                      f"file on another machine into {path.parent}, or set LW_DATA_DIR to a "
                      "folder holding the LongWriter files.") from exc
    os.replace(tmp, path)
