"""RUN accepts a full id, a unique id prefix or a run name; anything else is a clear error."""
from __future__ import annotations

import pytest

from inspect_tools.errors import InspectError
from inspect_tools.queries import open_reader
from store.db import init_db
from store.repository import RunSpec, create_run


@pytest.fixture(scope="module")
def ids_db(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("resolve") / "ids.db"
    db = init_db(str(path))
    ids = [create_run(db, RunSpec(mode="backtest", strategy="zscore", initial_cash=1.0, name=f"run-{i}"))
           for i in range(40)]
    db.dispose()
    return path, ids


def _resolve(path, ref: str) -> dict:
    with open_reader(str(path)) as reader:
        return reader.resolve(ref)


def test_full_id_prefix_and_name(ids_db) -> None:
    path, ids = ids_db
    target = ids[7]
    others = [i for i in ids if i != target]
    n = next(k for k in range(1, 33) if not any(o.startswith(target[:k]) for o in others))
    assert _resolve(path, target)["id"] == target
    assert _resolve(path, target[:n])["id"] == target
    assert _resolve(path, target[:n].upper())["id"] == target
    assert _resolve(path, "run-7")["id"] == target


def test_ambiguous_prefix_lists_candidates(ids_db) -> None:
    path, ids = ids_db
    first = max("0123456789abcdef", key=lambda d: sum(i.startswith(d) for i in ids))
    sharing = sorted((i for i in ids if i.startswith(first)), key=ids.index)  # 40 ids, 16 digits: ≥ 3 share
    assert len(sharing) >= 3
    with pytest.raises(InspectError) as err:
        _resolve(path, first)
    message = str(err.value)
    assert "ambiguous" in message and "\n" not in message
    assert all(i[:12] in message for i in sharing[:10])


def test_unknown_and_empty_references(ids_db) -> None:
    path, _ = ids_db
    for ref in ("no-such-run", "zzzz", "run-40", " "):
        with pytest.raises(InspectError):
            _resolve(path, ref)


def test_prefix_is_not_a_like_pattern(ids_db) -> None:
    path, _ = ids_db
    with pytest.raises(InspectError):
        _resolve(path, "%")
