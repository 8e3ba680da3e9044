"""The database travels as a base and page deltas that follow what changed
(mirrorkit.dbsync): what is sent, what comes back, and what is refused."""

from __future__ import annotations

import gzip
import hashlib
import random
import sqlite3
from pathlib import Path

import pytest

from mirrorkit import dbsync
from mirrorkit.errors import StateError


class Bucket(dict[str, bytes]):
    """Objects by key, counting what is put."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[str] = []

    def put(self, key: str, data: bytes) -> None:
        self.puts.append(key)
        self[key] = data


def make_db(path: Path, rows: int) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE articles (id INTEGER PRIMARY KEY, url TEXT UNIQUE, body TEXT)")
    rng = random.Random(7)
    with db:
        db.executemany("INSERT INTO articles (url, body) VALUES (?, ?)",
                       [(f"https://x.example/{i}", rng.randbytes(1500).hex())
                        for i in range(rows)])
    return db


def rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM articles ORDER BY id").fetchall()


def test_a_few_changed_rows_travel_as_a_small_delta_and_come_back_whole(
        tmp_path: Path) -> None:
    source = tmp_path / "a.sqlite3"
    db = make_db(source, 1500)  # about 5 MB
    bucket = Bucket()
    first, digests = dbsync.send(source, None, None, bucket.put)
    assert first.deltas == () and len(first.base) == 1

    with db:
        db.execute("UPDATE articles SET body = 'changed' WHERE id IN (5, 1500)")
        db.execute("INSERT INTO articles (url, body) VALUES ('https://x.example/new', 'n')")
    bucket.puts.clear()
    second, digests = dbsync.send(source, first, digests, bucket.put)
    assert second.base == first.base and len(second.deltas) == 1
    assert bucket.puts == list(second.deltas)  # the base is not sent again
    assert len(bucket[second.deltas[0]]) < 20_000 < first.base_bytes / 50

    copy = tmp_path / "b.sqlite3"
    received = dbsync.receive(second, bucket.__getitem__, copy)
    assert received == digests
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == second.sha256
    db.close()
    assert rows(copy) == rows(source)

    # Nothing changed: nothing is sent.
    bucket.puts.clear()
    third, _ = dbsync.send(source, second, digests, bucket.put)
    assert third == second and bucket.puts == []


def test_deltas_grown_to_half_the_base_make_a_new_base(tmp_path: Path) -> None:
    source = tmp_path / "a.sqlite3"
    db = make_db(source, 400)
    bucket = Bucket()
    ref, digests = dbsync.send(source, None, None, bucket.put)
    for round_ in range(12):
        with db:
            db.execute("UPDATE articles SET body = hex(randomblob(1500)) WHERE id % 7 = ?",
                       (round_ % 7,))
        ref, digests = dbsync.send(source, ref, digests, bucket.put)
        assert ref.delta_bytes <= dbsync.COMPACT_AT * ref.base_bytes
    assert len(ref.deltas) < 12  # a new base was sent at least once
    assert len([k for k in bucket.puts if k not in ref.deltas]) > 1
    db.close()
    copy = tmp_path / "b.sqlite3"
    dbsync.receive(ref, bucket.__getitem__, copy)
    assert rows(copy) == rows(source)


def test_a_changed_object_is_refused_and_the_old_copy_kept(tmp_path: Path) -> None:
    source = tmp_path / "a.sqlite3"
    make_db(source, 200).close()
    bucket = Bucket()
    ref, _ = dbsync.send(source, None, None, bucket.put)
    target = tmp_path / "b.sqlite3"
    target.write_bytes(b"the copy before")
    bucket[ref.base[0]] = gzip.compress(gzip.decompress(bucket[ref.base[0]])[:-1] + b"x")
    with pytest.raises(StateError, match="does not match its SHA-256"):
        dbsync.receive(ref, bucket.__getitem__, target)
    assert target.read_bytes() == b"the copy before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sqlite3", "b.sqlite3"]
