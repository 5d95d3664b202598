"""A cached hub download is re-checked against its sha256 before use: a corrupted or truncated
cached file is replaced by a fresh download from the (local) server; a good one is used as is."""
import hashlib
import logging
import os

import pytest

from src.inference.hub import download_checkpoint
from tests.test_hub import payload, server, served  # noqa: F401  (fixtures)


def _corrupt(data):
    """The same bytes with one bit flipped in the middle."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]


@pytest.mark.parametrize("damage", ["bit_flip", "truncated"])
def test_corrupted_cached_file_is_downloaded_again(served, server, payload, tmp_path, caplog, damage):
    url, sha = served
    good = open(payload[0], "rb").read()
    cache = tmp_path / "cache"
    cache.mkdir()
    cached = cache / "model.ckpt"
    cached.write_bytes(_corrupt(good) if damage == "bit_flip" else good[:-1])
    assert hashlib.sha256(cached.read_bytes()).hexdigest() != sha
    with caplog.at_level(logging.WARNING, logger="nasfpn"):
        path = download_checkpoint(url, sha, str(cache), progress=False)
    assert path == str(cached)
    assert cached.read_bytes() == good
    assert server.requests == [("/files/model.ckpt", None)]  # fetched once, from the start
    assert "cached file has the wrong sha256" in caplog.text
    assert sorted(os.listdir(cache)) == ["model.ckpt"]


def test_verified_cached_file_is_not_downloaded_again(served, server, payload, tmp_path):
    url, sha = served
    cached = tmp_path / "model.ckpt"
    cached.write_bytes(open(payload[0], "rb").read())
    assert download_checkpoint(url, sha, str(tmp_path), progress=False) == str(cached)
    assert server.requests == []
