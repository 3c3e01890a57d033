"""Benchmark loaders: verified files, checksum errors, missing folders, stratified subsets."""

import os
import shutil
from pathlib import Path

import pytest

import lw
from lw import datasets
from lw.errors import LwError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "longwriter"
DATA = Path(os.environ.get("LW_DATA_DIR") or SHARED)
needs_data = pytest.mark.skipif(not (DATA / "longwrite_ruler.jsonl").exists(),
                                reason="no offline copy of the LongWriter files here")


@pytest.fixture
def data_dir(monkeypatch):
    monkeypatch.setenv("LW_DATA_DIR", str(DATA))


@needs_data
def test_loads_verified_files_with_ids_language_and_bucket(data_dir):
    rows = datasets.load("longbench_write")
    assert len(rows) == 120
    assert {r["language"] for r in rows} == {"en", "zh"}
    assert sum(r["language"] == "en" for r in rows) == 60
    buckets = {b: sum(r["bucket"] == b for r in rows) for b in
               ("[0,500)", "[500,2k)", "[2k,4k)", "[4k,20k]")}
    assert buckets == {"[0,500)": 26, "[500,2k)": 36, "[2k,4k)": 31, "[4k,20k]": 27}  # the paper's
    ruler = datasets.load("longwrite_ruler")
    assert len(ruler) == 48 and sorted({r["length"] for r in ruler}) == \
        [1000, 2000, 5000, 10000, 20000, 30000]
    assert len(datasets.load("longbench_write_en")) == 60


@needs_data
def test_corrupted_file_is_a_checksum_error(tmp_path, monkeypatch):
    shutil.copy(DATA / "longwrite_ruler.jsonl", tmp_path / "longwrite_ruler.jsonl")
    with open(tmp_path / "longwrite_ruler.jsonl", "a") as f:
        f.write("\n")
    monkeypatch.setenv("LW_DATA_DIR", str(tmp_path))
    with pytest.raises(LwError, match="sha256.*not the pinned"):
        datasets.load("longwrite_ruler")


def test_missing_folder_says_how_to_get_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("LW_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(LwError, match="has no longbench_write.jsonl.*raw.githubusercontent"):
        datasets.load("longbench_write")


def test_offline_download_failure_is_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("LW_DATA_DIR", raising=False)
    monkeypatch.setenv("LW_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(datasets, "URL", "http://127.0.0.1:9/{name}")  # nothing listens
    with pytest.raises(LwError, match="could not download.*LW_DATA_DIR"):
        datasets.load("longwrite_ruler")
    assert not list(tmp_path.rglob("*.part"))


def test_unknown_benchmark():
    with pytest.raises(LwError, match="unknown benchmark"):
        datasets.load("mmlu")


@needs_data
def test_subset_is_stratified_seeded_and_filtered(data_dir):
    rows = datasets.load("longbench_write")
    pick = datasets.subset(rows, n=8, seed=0)
    assert len(pick) == 8 and len({(r["bucket"], r["language"]) for r in pick}) == 8
    assert pick == datasets.subset(rows, n=8, seed=0)
    assert pick != datasets.subset(rows, n=8, seed=1)
    small = datasets.subset(rows, n=6, seed=0, max_length=2000, languages=("en",))
    assert all(r["length"] <= 2000 and r["language"] == "en" for r in small)
    assert len(datasets.subset(rows, n=None, languages=("zh",))) == 60


@needs_data
def test_download_verifies_and_caches(tmp_path, monkeypatch):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(DATA))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("LW_DATA_DIR", raising=False)
    monkeypatch.setenv("LW_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(datasets, "URL", f"http://127.0.0.1:{server.server_address[1]}/{{name}}")
    try:
        assert len(datasets.load("longwrite_ruler")) == 48
    finally:
        server.shutdown()
    cached = tmp_path / "longwriter" / "longwrite_ruler.jsonl"
    assert datasets.sha256(cached) == datasets.FILES["longwrite_ruler"][2]
    assert len(datasets.load("longwrite_ruler")) == 48  # from the cache: the server is gone
    cached.write_text("tampered\n")
    with pytest.raises(LwError, match="not the pinned"):
        datasets.load("longwrite_ruler")


def test_subset_and_row_checks_name_the_field_and_the_row():
    rows = [{"id": f"x{i}", "prompt": f"Write {n} words on tides.", "length": n}
            for i, n in enumerate([100, 900, 3000, 6000])]
    # Rows without language or bucket (not from load) are still stratified, from prompt/length.
    assert len(datasets.subset(rows, n=3)) == 3
    with pytest.raises(LwError, match=r"subset\[1\] \(id 'x1'\) has no 'length'"):
        datasets.subset([rows[0], {"id": "x1", "prompt": "Write."}], n=1)
    old = {"id": "y", "instruction": "Write 50 words.", "target_words": 50}
    with pytest.raises(LwError, match="'instruction', the old name.*Prompt.from_dict"):
        datasets.check_rows([old])
    fixed = lw.records.Prompt.from_dict(old).to_dict()
    assert datasets.check_rows([fixed]) == [fixed]
    for length in (0, -5, 1.5, "800", True):
        with pytest.raises(LwError, match=r"rows\[0\] \(id 'x0'\): 'length'.*at least 1"):
            datasets.check_rows([{**rows[0], "length": length}])
    with pytest.raises(LwError, match="appears twice"):
        datasets.check_rows([rows[0], rows[0]])
    with pytest.raises(LwError, match="non-empty text"):
        datasets.check_rows([{**rows[0], "prompt": "  "}])
    with pytest.raises(LwError, match="list of dicts"):
        datasets.check_rows({"id": "x"})
    with pytest.raises(LwError, match=r"rows\[0\] is a str"):
        datasets.check_rows(["Write 50 words."])
