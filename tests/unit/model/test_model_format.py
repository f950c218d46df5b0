"""The pickle-free model format: round trips, and refusal of untrusted directories before loading."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from recops_model import (
    MANIFEST_FILE,
    ModelRejected,
    RecModel,
    load_model,
    recommend,
    save_model,
    verify_model_dir,
)


def _base(kind: str, **extra: object) -> RecModel:
    users = np.array(["u1", "u2", "u3"])
    items = np.array(["a", "b", "c", "d"])
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 2, 0, 1], [0, 0, 0, 0]], dtype=np.float32))
    return RecModel(
        algorithm={"popularity": "popularity", "factors": "puresvd", "item_item": "itemknn"}[kind],
        kind=kind,  # type: ignore[arg-type]
        user_ids=users,
        item_ids=items,
        seen=seen,
        popularity=np.array([4, 3, 2, 1], dtype=np.float32),
        item_categories=np.array(["x", "x", "y", "y"]),
        meta={"params": {"factors": 2}, "snapshot": "sha256:abc", "metrics": {"ndcg@10": 0.25}},
        **extra,  # type: ignore[arg-type]
    )


def models() -> dict[str, RecModel]:
    rng = np.random.default_rng(7)
    return {
        "popularity": _base("popularity"),
        "factors": _base(
            "factors",
            user_factors=rng.standard_normal((3, 2)).astype(np.float32),
            item_factors=rng.standard_normal((4, 2)).astype(np.float32),
        ),
        "item_item_dense": _base("item_item", similarity=rng.random((4, 4)).astype(np.float32)),
        "item_item_csr": _base(
            "item_item",
            similarity=sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 0.5, 0], [0, 0.5, 0, 0], [0, 0, 0, 0]])),
        ),
    }


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "model"
    save_model(models()["factors"], path)
    return path


@pytest.mark.parametrize("name", list(models()))
def test_round_trip_every_kind(tmp_path: Path, name: str) -> None:
    m = models()[name]
    manifest = save_model(m, tmp_path / "m")
    assert manifest["digest"].startswith("sha256:")
    assert set(manifest["files"]) == {p.name for p in (tmp_path / "m").iterdir()} - {MANIFEST_FILE}
    assert verify_model_dir(tmp_path / "m") == manifest
    back = load_model(tmp_path / "m")
    assert back.kind == m.kind and back.algorithm == m.algorithm
    assert back.digest == manifest["digest"]
    assert {k: v for k, v in back.meta.items() if k != "modelDigest"} == m.meta
    np.testing.assert_array_equal(back.user_ids, m.user_ids)
    np.testing.assert_array_equal(back.item_ids, m.item_ids)
    np.testing.assert_array_equal(back.item_categories, m.item_categories)
    np.testing.assert_array_equal(back.popularity, m.popularity)
    np.testing.assert_array_equal(back.seen.toarray(), m.seen.toarray())
    assert back.seen.dtype == np.float32
    if m.kind == "factors":
        np.testing.assert_array_equal(back.user_factors, m.user_factors)
        np.testing.assert_array_equal(back.item_factors, m.item_factors)
        assert back.item_factors.flags.c_contiguous  # the layout a micro-batch scores fastest (V @ U.T)
    if m.kind == "item_item":
        want = m.similarity.toarray() if sp.issparse(m.similarity) else m.similarity
        got = back.similarity.toarray() if sp.issparse(back.similarity) else back.similarity
        assert sp.issparse(back.similarity) == sp.issparse(m.similarity)
        np.testing.assert_allclose(got, want)
    for u in ["u1", "u2", "u3", "nobody"]:
        assert recommend(back, u, 3) == recommend(m, u, 3)


def test_digest_is_deterministic_and_content_addressed(tmp_path: Path) -> None:
    a = save_model(models()["factors"], tmp_path / "a")
    b = save_model(models()["factors"], tmp_path / "b")
    c = save_model(models()["popularity"], tmp_path / "c")
    assert a["digest"] == b["digest"] != c["digest"]


def test_save_refuses_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("x")
    with pytest.raises(FileExistsError):
        save_model(models()["popularity"], tmp_path / "m")


def test_save_refuses_inconsistent_model(tmp_path: Path) -> None:
    m = _base("factors", user_factors=np.zeros((3, 2), np.float32), item_factors=np.zeros((5, 2), np.float32))
    with pytest.raises(ModelRejected) as e:
        save_model(m, tmp_path / "m")
    assert e.value.reason == "InconsistentModel"
    assert not (tmp_path / "m").exists()


def test_save_refuses_non_finite_values(tmp_path: Path) -> None:
    m = _base("popularity")
    bad = RecModel(**{**m.__dict__, "popularity": np.array([1, np.nan, 0, 0], np.float32)})  # type: ignore[arg-type]
    with pytest.raises(ModelRejected, match="NaN"):
        save_model(bad, tmp_path / "m")


def _rewrite_manifest(path: Path, name: str, data: bytes) -> None:
    """Replace file `name` and fix up its digest, as an attacker who controls the manifest would."""
    import hashlib

    (path / name).write_bytes(data)
    man = json.loads((path / MANIFEST_FILE).read_text())
    man["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    man.pop("digest", None)
    (path / MANIFEST_FILE).write_text(json.dumps(man))


def _reason(path: Path) -> str:
    with pytest.raises(ModelRejected) as e:
        verify_model_dir(path)
    with pytest.raises(ModelRejected) as e2:
        load_model(path)
    assert e.value.reason == e2.value.reason
    assert e.value.message
    return e.value.reason


def test_tampered_digest_refused(saved: Path) -> None:
    data = bytearray((saved / "item_factors.npy").read_bytes())
    data[-1] ^= 0x01
    (saved / "item_factors.npy").write_bytes(bytes(data))
    assert _reason(saved) == "DigestMismatch"


def test_tampered_manifest_digest_refused(saved: Path) -> None:
    man = json.loads((saved / MANIFEST_FILE).read_text())
    man["files"]["popularity.npy"]["sha256"] = "0" * 64
    (saved / MANIFEST_FILE).write_text(json.dumps(man))
    assert _reason(saved) == "DigestMismatch"


def test_extra_file_refused(saved: Path) -> None:
    (saved / "notes.txt").write_text("hello")
    assert _reason(saved) == "UnexpectedFile"


def test_extra_file_listed_in_manifest_refused(saved: Path) -> None:
    _rewrite_manifest(saved, "extra.npy", (saved / "popularity.npy").read_bytes())
    assert _reason(saved) == "UnexpectedFile"


def test_missing_file_refused(saved: Path) -> None:
    (saved / "user_factors.npy").unlink()
    assert _reason(saved) == "MissingFile"


def test_missing_manifest_refused(saved: Path) -> None:
    (saved / MANIFEST_FILE).unlink()
    assert _reason(saved) == "MissingFile"


def test_subdirectory_refused(saved: Path) -> None:
    (saved / "sub").mkdir()
    assert _reason(saved) == "UnexpectedFile"


def test_pickled_object_array_refused_before_unpickling(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    np.save(buf, np.array([Evil(), 1], dtype=object), allow_pickle=True)
    _rewrite_manifest(saved, "item_ids.npy", buf.getvalue())
    assert _reason(saved) == "PickleRefused"
    assert not marker.exists()


def test_raw_pickle_file_refused(saved: Path) -> None:
    _rewrite_manifest(saved, "popularity.npy", pickle.dumps(np.zeros(4, np.float32)))
    assert _reason(saved) == "InvalidArray"


def test_structured_dtype_refused(saved: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.zeros(4, dtype=[("a", "f4"), ("b", "i4")]))
    _rewrite_manifest(saved, "popularity.npy", buf.getvalue())
    assert _reason(saved) == "InvalidArray"


def test_truncated_array_refused(saved: Path) -> None:
    _rewrite_manifest(saved, "popularity.npy", (saved / "popularity.npy").read_bytes()[:-4])
    assert _reason(saved) == "InvalidArray"


def test_symlink_refused(saved: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.npy"
    outside.write_bytes((saved / "popularity.npy").read_bytes())
    (saved / "popularity.npy").unlink()
    os.symlink(outside, saved / "popularity.npy")
    assert _reason(saved) == "UnsafePath"


@pytest.mark.parametrize("name", ["../outside.npy", "/etc/passwd", "sub/x.npy", "..", ".hidden"])
def test_path_escape_in_manifest_refused(saved: Path, name: str) -> None:
    man = json.loads((saved / MANIFEST_FILE).read_text())
    man["files"][name] = {"sha256": "0" * 64}
    (saved / MANIFEST_FILE).write_text(json.dumps(man))
    assert _reason(saved) == "UnsafePath"


def test_unknown_kind_refused(saved: Path) -> None:
    mj = json.loads((saved / "model.json").read_text())
    mj["kind"] = "deep_magic"
    _rewrite_manifest(saved, "model.json", json.dumps(mj).encode())
    assert _reason(saved) == "UnknownKind"


def test_unknown_format_version_refused(saved: Path) -> None:
    man = json.loads((saved / MANIFEST_FILE).read_text())
    man["formatVersion"] = 99
    (saved / MANIFEST_FILE).write_text(json.dumps(man))
    assert _reason(saved) == "UnsupportedFormatVersion"


def test_garbage_manifest_refused(saved: Path) -> None:
    (saved / MANIFEST_FILE).write_text("{not json")
    assert _reason(saved) == "InvalidManifest"


def test_not_a_directory_refused(tmp_path: Path) -> None:
    assert _reason(tmp_path / "nope") == "MissingFile"
    (tmp_path / "file").write_text("x")
    assert _reason(tmp_path / "file") == "InvalidModelDir"


def test_inconsistent_shapes_refused_at_load(saved: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.zeros(7, np.float32))
    _rewrite_manifest(saved, "popularity.npy", buf.getvalue())
    verify_model_dir(saved)  # digests and dtypes are fine...
    with pytest.raises(ModelRejected) as e:  # ...but the arrays do not fit together
        load_model(saved)
    assert e.value.reason == "InconsistentModel"
