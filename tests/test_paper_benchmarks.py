"""lw.paper.benchmarks (through lw.paper.fetch): verified files, checksum errors, missing folders,
stratified subsets."""

import os
import shutil
from pathlib import Path

import pytest

import lw
from lw.errors import LwError
from lw.paper import benchmarks, fetch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "longwriter"
DATA = Path(os.environ.get("LW_DATA_DIR") or SHARED)
needs_data = pytest.mark.skipif(not (DATA / "longwrite_ruler.jsonl").exists(),
                                reason="no offline copy of the LongWriter files here")


@pytest.fixture
def data_dir(monkeypatch):
    monkeypatch.setenv("LW_DATA_DIR", str(DATA))


@needs_data
def test_loads_verified_files_with_ids_language_and_bucket(data_dir):
    rows = benchmarks.load("longbench_write")
    assert len(rows) == 120
    assert {r["language"] for r in rows} == {"en", "zh"}
    assert sum(r["language"] == "en" for r in rows) == 60
    buckets = {b: sum(r["bucket"] == b for r in rows) for b in
               ("[0,500)", "[500,2k)", "[2k,4k)", "[4k,20k]")}
    assert buckets == {"[0,500)": 26, "[500,2k)": 36, "[2k,4k)": 31, "[4k,20k]": 27}  # the paper's
    ruler = benchmarks.load("longwrite_ruler")
    assert len(ruler) == 48 and sorted({r["length"] for r in ruler}) == \
        [1000, 2000, 5000, 10000, 20000, 30000]
    assert len(benchmarks.load("longbench_write_en")) == 60


@needs_data
def test_corrupted_file_is_a_checksum_error(tmp_path, monkeypatch):
    shutil.copy(DATA / "longwrite_ruler.jsonl", tmp_path / "longwrite_ruler.jsonl")
    with open(tmp_path / "longwrite_ruler.jsonl", "a") as f:
        f.write("\n")
    monkeypatch.setenv("LW_DATA_DIR", str(tmp_path))
    with pytest.raises(LwError, match="sha256.*not the pinned"):
        benchmarks.load("longwrite_ruler")


def test_missing_folder_says_how_to_get_the_files(tmp_path, monkeypatch):
    # LW_DATA_DIR without the file, nothing cached, no network: the error names both places.
    monkeypatch.setenv("LW_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("LW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fetch, "URL", "http://127.0.0.1:9/{commit}/{path}")  # nothing listens
    with pytest.raises(LwError, match="could not download.*127.0.0.1.*LW_DATA_DIR=.*nowhere has "
                                      "no longbench_write.jsonl"):
        benchmarks.load("longbench_write")


def test_offline_download_failure_is_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("LW_DATA_DIR", raising=False)
    monkeypatch.setenv("LW_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fetch, "URL", "http://127.0.0.1:9/{commit}/{path}")  # nothing listens
    with pytest.raises(LwError, match="could not download.*LW_DATA_DIR"):
        benchmarks.load("longwrite_ruler")
    assert not list(tmp_path.rglob("*.part"))


def test_unknown_benchmark():
    with pytest.raises(LwError, match="unknown benchmark"):
        benchmarks.load("mmlu")


@needs_data
def test_subset_is_stratified_seeded_and_filtered(data_dir):
    rows = benchmarks.load("longbench_write")
    pick = benchmarks.subset(rows, n=8, seed=0)
    assert len(pick) == 8 and len({(r["bucket"], r["language"]) for r in pick}) == 8
    assert pick == benchmarks.subset(rows, n=8, seed=0)
    assert pick != benchmarks.subset(rows, n=8, seed=1)
    small = benchmarks.subset(rows, n=6, seed=0, max_length=2000, languages=("en",))
    assert all(r["length"] <= 2000 and r["language"] == "en" for r in small)
    assert len(benchmarks.subset(rows, n=None, languages=("zh",))) == 60


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
    # The server serves the offline copy's files by name: pin them at their bare names.
    monkeypatch.setattr(fetch, "URL", f"http://127.0.0.1:{server.server_address[1]}/{{path}}")
    monkeypatch.setattr(benchmarks, "FILES", {
        k: (fetch.Pinned(Path(f.path).name, f.commit, f.sha256), n)
        for k, (f, n) in benchmarks.FILES.items()})
    try:
        assert len(benchmarks.load("longwrite_ruler")) == 48
    finally:
        server.shutdown()
    pinned = benchmarks.FILES["longwrite_ruler"][0]
    cached = tmp_path / "longwriter" / pinned.commit[:12] / "longwrite_ruler.jsonl"
    assert fetch.sha256(cached) == pinned.sha256
    assert len(benchmarks.load("longwrite_ruler")) == 48  # from the cache: the server is gone
    cached.write_text("tampered\n")
    with pytest.raises(LwError, match="not the pinned"):
        benchmarks.load("longwrite_ruler")


def test_subset_and_row_checks_name_the_field_and_the_row():
    rows = [{"id": f"x{i}", "prompt": f"Write {n} words on tides.", "length": n}
            for i, n in enumerate([100, 900, 3000, 6000])]
    # Rows without language or bucket (not from load) are still stratified, from prompt/length.
    assert len(benchmarks.subset(rows, n=3)) == 3
    with pytest.raises(LwError, match=r"subset\[1\] \(id 'x1'\) has no 'length'"):
        benchmarks.subset([rows[0], {"id": "x1", "prompt": "Write."}], n=1)
    old = {"id": "y", "instruction": "Write 50 words.", "target_words": 50}
    with pytest.raises(LwError, match=r"'instruction', the old name.*lw\.records\.prompt\(row\)"):
        benchmarks.check_rows([old])
    fixed = lw.records.prompt(old)
    assert benchmarks.check_rows([fixed]) == [fixed]
    for length in (0, -5, 1.5, "800", True):
        with pytest.raises(LwError, match=r"rows\[0\] \(id 'x0'\): 'length'.*at least 1"):
            benchmarks.check_rows([{**rows[0], "length": length}])
    with pytest.raises(LwError, match="appears twice"):
        benchmarks.check_rows([rows[0], rows[0]])
    with pytest.raises(LwError, match="non-empty text"):
        benchmarks.check_rows([{**rows[0], "prompt": "  "}])
    with pytest.raises(LwError, match="list of dicts"):
        benchmarks.check_rows({"id": "x"})
    with pytest.raises(LwError, match=r"rows\[0\] is a str"):
        benchmarks.check_rows(["Write 50 words."])
