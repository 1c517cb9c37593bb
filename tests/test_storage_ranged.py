"""Ranged parallel reads come out in order, whole, and stop cleanly."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path

import pytest

from crdb_archive.storage.base import open_storage
from crdb_archive.storage.ranged import RangedReader
from support.s3 import MotoS3


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 10_500])
@pytest.mark.parametrize("chunk", [1, 7, 1000, 4096, -1])
def test_local_object_read_in_order(tmp_path: Path, size: int, chunk: int) -> None:
    data = os.urandom(size)
    (tmp_path / "obj").write_bytes(data)
    storage = open_storage(str(tmp_path))
    out = bytearray()
    with RangedReader(storage, "obj", size, part_size=1000, parallel=3) as reader:
        while piece := reader.read(chunk):
            out += piece
            if chunk < 0:
                break
    assert bytes(out) == data


def test_s3_object_read_with_several_ranges(s3_env: MotoS3) -> None:
    bucket = s3_env.bucket()
    data = os.urandom(3 * 65536 + 17)
    with closing(s3_env.client()) as client:
        client.put_object(Bucket=bucket, Key="big/object", Body=data)
    with open_storage(f"s3://{bucket}/big") as storage, RangedReader(
        storage, "object", len(data), part_size=65536, parallel=2
    ) as reader:
        assert reader.read() == data
        assert reader.read(10) == b""


def test_closing_early_cancels_the_rest(tmp_path: Path) -> None:
    data = os.urandom(50_000)
    (tmp_path / "obj").write_bytes(data)
    storage = open_storage(str(tmp_path))
    reader = RangedReader(storage, "obj", len(data), part_size=1000, parallel=4)
    assert reader.read(1500) == data[:1500]
    reader.close()
    reader.close()
