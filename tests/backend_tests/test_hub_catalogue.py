"""The model catalogue: entries are complete and honest (licences, pinned revisions, sources),
fits() and licence flags, the user catalogue's validation, and resolve_model for ids and
folders (offline: no network is touched)."""

from __future__ import annotations

import json
import re

import pytest

from backend.hub import catalogue as cat
from backend.hub.catalogue import (CATALOGUE, GB, LOADERS, ROLES, TASKS, ModelNotAvailable, entry_from_json,
                                   load_user_entries, resolve_model)


def test_builtin_entries_are_complete():
    assert {"parallax-tiny", "wan2.1-t2v-1.3b", "wan2.1-flf2v-14b-720p", "ltx-video", "cogvideox-2b"} <= set(CATALOGUE)
    loaders = {e.loader for e in CATALOGUE.values()}
    assert {"wan-t2v", "wan-flf2v", "ltx-condition", "cogvideox", "parallax", "depth-anything-3"} <= loaders
    for e in CATALOGUE.values():
        assert e.role in ROLES and e.loader in LOADERS and set(e.tasks) <= set(TASKS), e.id
        assert e.licence and e.vram_gb > 0, e.id
        if e.is_local:
            continue
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", e.repo), e.id
        assert e.download_bytes > 0 and e.size_source and e.sources, e.id
        # A verified revision is a full commit sha; an unverified one says why.
        if e.revision_verified:
            assert re.fullmatch(r"[0-9a-f]{40}", e.revision), e.id
        else:
            assert "sha" in e.notes, e.id


def test_geometry_entries_allow_commercial_use():
    geometry = [e for e in CATALOGUE.values() if e.role == "geometry"]
    assert geometry and all(e.commercial_use and "Apache" in e.licence for e in geometry)


def test_licence_flags_and_acceptance():
    ltx = CATALOGUE["ltx-video"]
    assert ltx.needs_acceptance and "non-commercial or restricted" in ltx.licence_flags()
    wan = CATALOGUE["wan2.1-t2v-1.3b"]
    assert not wan.needs_acceptance and wan.licence_flags() == []
    gated = entry_from_json(dict(_user_entry("x"), gated=True, commercial_use=True))
    assert gated.needs_acceptance and gated.licence_flags() == ["gated"]


def test_fits():
    wan = CATALOGUE["wan2.1-t2v-1.3b"]  # 8.2 GB
    assert wan.fits(None) is None
    assert wan.fits(int(24 * GB)) is True
    assert wan.fits(int(8 * GB)) is False


def _user_entry(model_id, **kw):
    d = {"id": model_id, "role": "generator", "loader": "wan-t2v", "repo": "me/my-wan", "revision": "v1.0",
         "licence": "Apache-2.0", "download_bytes": 123, "vram_gb": 1.5, "tasks": ["t2v"], "commercial_use": True}
    d.update(kw)
    return d


def test_user_catalogue(tmp_path, monkeypatch):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": [_user_entry("my-wan")]}))
    monkeypatch.setenv(cat.USER_CATALOGUE_ENV, str(path))
    entries = cat.catalogue()
    assert entries["my-wan"].repo == "me/my-wan" and entries["my-wan"].revision_verified is False
    assert "wan2.1-t2v-1.3b" in entries
    # Every malformed file is refused with a message naming the file and the field.
    for bad, message in ((_user_entry("wan2.1-t2v-1.3b"), "already in the catalogue"),
                         (_user_entry("x", role="painter"), "role must be"),
                         (_user_entry("x", revision=""), "must be pinned"),
                         (_user_entry("x", repo="no-slash"), "owner/name"),
                         (_user_entry("x", tasks=["dance"]), "tasks must be"),
                         (_user_entry("x", surprise=1), "unknown field"),
                         ({"id": "x"}, "misses")):
        path.write_text(json.dumps({"models": [bad]}))
        with pytest.raises(ValueError, match=message) as info:
            load_user_entries()
        assert "models.json" in str(info.value)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_user_entries()


def test_resolve_bundled_and_folders(tmp_path):
    tiny = resolve_model("parallax-tiny")
    assert tiny.entry.loader == "parallax" and (tiny.path / "config.json").is_file()
    folder = tmp_path / "my-model"
    folder.mkdir()
    with pytest.raises(ModelNotAvailable, match="no model_index.json or config.json"):
        resolve_model(folder)
    (folder / "model_index.json").write_text("{}")
    got = resolve_model(str(folder))
    assert got.path == folder.resolve() and got.entry is None
    with pytest.raises(ModelNotAvailable, match="neither a catalogue id nor an existing folder.*PARALLAX_CATALOGUE"):
        resolve_model("someone/some-model")
    with pytest.raises(ModelNotAvailable, match="is a file"):
        resolve_model(folder / "model_index.json")


def test_resolve_not_downloaded_says_how(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotAvailable, match=r"python -m backend models download ltx-video --accept-licence"):
        resolve_model("ltx-video")
    with pytest.raises(ModelNotAvailable, match=r"models download wan2.1-t2v-1.3b`"):
        resolve_model("wan2.1-t2v-1.3b")
    assert not (tmp_path / "empty-cache").exists()  # looking did not create anything
