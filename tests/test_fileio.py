"""bindkit.fileio: atomic writes leave the old file or the new one (never a partial one, never temporaries),
streamed hashing equals hashing the bytes, and first bytes are named for error messages."""

from __future__ import annotations

import hashlib

import pytest

from bindkit.fileio import atomic_path, atomic_write_bytes, hash_file_into, sniff


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "data.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half of the new fi")
            raise RuntimeError("writer died")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def test_streamed_hash_equals_hash_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 9000  # more than one 1 MiB chunk
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert hash_file_into(hashlib.sha256(), path).hexdigest() == hashlib.sha256(data).hexdigest()
    resumed = hashlib.sha256(data[:1000])  # a download resumed: the digest continues over the file
    (tmp_path / "rest").write_bytes(data[1000:])
    assert hash_file_into(resumed, tmp_path / "rest").hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("head, what", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "a PNG image"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "a WebP image"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),
    (b"hello world", None),
])
def test_sniff_names_common_formats(head, what):
    assert sniff(head) == what
