"""lw.paper.prompts: the paper's prompts fetched, verified and filled as the official scripts fill them."""

import hashlib

import pytest

from lw.errors import LwError
from lw.paper import fetch
from lw.paper import prompts as paper_prompts


def test_pinned_files_name_a_commit_a_checksum_and_their_placeholders():
    for f in paper_prompts.FILES.values():
        assert len(f.commit) == 40 and len(f.sha256) == 64 and f.fields
        assert f.url.startswith("https://raw.githubusercontent.com/THUDM/LongWriter/" + f.commit)


def test_render_fills_placeholders_in_the_official_order(official_prompts):
    out = paper_prompts.render("judge", INST="Write $RESPONSE$ twice.", RESPONSE="an answer")
    # eval_quality.py replaces $INST$ first, then $RESPONSE$ everywhere, the request's too
    assert "Write an answer twice." in out and "an answer" in out and "$" not in out
    assert paper_prompts.version("judge").startswith("official:judge.txt@")
    with pytest.raises(LwError, match="missing"):
        paper_prompts.render("write", INST="x", PLAN="y", TEXT="z")


def test_a_file_with_another_checksum_is_refused(official_prompts, tmp_path, monkeypatch):
    path = paper_prompts.locate("plan")
    path.write_text("something else", encoding="utf-8")
    with pytest.raises(LwError, match="not the pinned"):
        paper_prompts.text("plan")


def test_offline_without_a_copy_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LW_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", no_network)
    with pytest.raises(LwError, match="could not download .*judge.txt.*LW_DATA_DIR"):
        paper_prompts.text("judge")
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_a_downloaded_file_is_cached_and_verified(tmp_path, monkeypatch):
    body = b"stand-in $INST$"
    monkeypatch.delenv("LW_DATA_DIR", raising=False)
    monkeypatch.setenv("LW_CACHE_DIR", str(tmp_path))
    import dataclasses

    f = dataclasses.replace(paper_prompts.FILES["plan"], sha256=hashlib.sha256(body).hexdigest())
    monkeypatch.setattr(paper_prompts, "FILES", {**paper_prompts.FILES, "plan": f})

    class Reply:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            return body

    calls = []
    monkeypatch.setattr(fetch.urllib.request, "urlopen",
                        lambda url, timeout: calls.append(url) or Reply())
    assert paper_prompts.render("plan", INST="x") == "stand-in x"
    assert paper_prompts.render("plan", INST="y") == "stand-in y"
    assert calls == [f.url]  # fetched once, then read from the cache
