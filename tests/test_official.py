"""lw.official: the paper's prompts fetched, verified and filled as the official scripts fill them."""

import hashlib

import pytest

from lw import official
from lw.errors import LwError


def test_pinned_files_name_a_commit_a_checksum_and_their_placeholders():
    for f in official.FILES.values():
        assert len(f.commit) == 40 and len(f.sha256) == 64 and f.fields
        assert f.url.startswith("https://raw.githubusercontent.com/THUDM/LongWriter/" + f.commit)


def test_render_fills_placeholders_in_the_official_order(official_prompts):
    out = official.render("judge", INST="Write $RESPONSE$ twice.", RESPONSE="an answer")
    # eval_quality.py replaces $INST$ first, then $RESPONSE$ everywhere, the request's too
    assert "Write an answer twice." in out and "an answer" in out and "$" not in out
    assert official.version("judge").startswith("official:judge.txt@")
    with pytest.raises(LwError, match="missing"):
        official.render("write", INST="x", PLAN="y", TEXT="z")


def test_a_file_with_another_checksum_is_refused(official_prompts, tmp_path, monkeypatch):
    path = official.locate("plan")
    path.write_text("something else", encoding="utf-8")
    with pytest.raises(LwError, match="not the pinned"):
        official.text("plan")


def test_offline_without_a_copy_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LW_CACHE_DIR", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(official.urllib.request, "urlopen", no_network)
    with pytest.raises(LwError, match="could not download .*judge.txt.*LW_DATA_DIR"):
        official.text("judge")
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_a_downloaded_file_is_cached_and_verified(tmp_path, monkeypatch):
    body = b"stand-in $INST$"
    monkeypatch.delenv("LW_DATA_DIR", raising=False)
    monkeypatch.setenv("LW_CACHE_DIR", str(tmp_path))
    import dataclasses

    f = dataclasses.replace(official.FILES["plan"], sha256=hashlib.sha256(body).hexdigest())
    monkeypatch.setattr(official, "FILES", {**official.FILES, "plan": f})

    class Reply:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            return body

    calls = []
    monkeypatch.setattr(official.urllib.request, "urlopen",
                        lambda url, timeout: calls.append(url) or Reply())
    assert official.render("plan", INST="x") == "stand-in x"
    assert official.render("plan", INST="y") == "stand-in y"
    assert calls == [f.url]  # fetched once, then read from the cache
