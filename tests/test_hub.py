"""The published checkpoint: hub card, verified resumable download from a local HTTP server (with
Range support written here), the re-checked cache, and the MindSpore Hub entry point loading a
downloaded checkpoint."""

import hashlib
import logging
import os
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from nasfpn.core.files import ChecksumError
from nasfpn.inference.hub import (
    DownloadError,
    download_checkpoint,
    expected_sha256,
    published_checkpoint,
    read_card,
)
from tests.conftest import make_config


# The published checkpoint: hub card, verified resumable download from a local HTTP server (with
# Range support written here), and the MindSpore Hub entry point loading a downloaded checkpoint.

PUBLISHED_SHA = "baf3ce544edce7a1eeaa4dfa34e447a64a572ae7c0be3c2c5f42938a78fb2e3c"
PUBLISHED_URL = (
    "https://download.mindspore.cn/models/r1.6/nasfpn_ascend_v160_coco2017_research_cv_mAP41.51.ckpt"
)


class RangeHandler(BaseHTTPRequestHandler):
    """Serves server.files[path] (a file path); honours 'Range: bytes=N-' unless server.no_range;
    when server.cut_after is set, the next response stops after that many bytes (then it resets)."""

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        source = server.files.get(self.path)
        if source is None:
            self.send_error(404)
            return
        size = os.path.getsize(source)
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        start = int(match.group(1)) if match and not server.no_range else 0
        if start >= size and match:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        budget = server.cut_after if server.cut_after is not None else size
        server.cut_after = None
        with open(source, "rb") as f:
            f.seek(start)
            while budget > 0:
                block = f.read(min(1 << 20, budget))
                if not block:
                    break
                self.wfile.write(block)
                budget -= len(block)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.files, httpd.requests, httpd.cut_after, httpd.no_range = {}, [], None, False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    """3 MiB of random bytes served as /files/model.ckpt; returns (url path, sha256)."""
    path = tmp_path_factory.mktemp("served") / "model.ckpt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes())
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served(server, payload):
    server.files["/files/model.ckpt"] = payload[0]
    server.requests.clear()
    server.cut_after, server.no_range = None, False
    return f"http://127.0.0.1:{server.server_port}/files/model.ckpt", payload[1]


def test_card_states_the_published_checkpoint():
    card = read_card()
    assert card["url"] == PUBLISHED_URL and card["sha256"] == PUBLISHED_SHA
    assert card["license"] == "Apache-2.0" and card["model-name"] == "nas-fpn"
    assert card["module-type"] == "cv" and card["train-dataset"] == "coco2017"
    assert card["evaluation"] == "mAP41.51" and str(card["mindspore-version"]) == "1.6"
    assert card["used-for"] == "inference" and card["fine-tunable"] is True


def test_download_with_the_right_digest(served, server, payload, tmp_path):
    url, sha = served
    path = download_checkpoint(url, sha, str(tmp_path / "cache"), progress=False)
    assert path == str(tmp_path / "cache" / "model.ckpt")
    assert open(path, "rb").read() == open(payload[0], "rb").read()
    assert os.listdir(tmp_path / "cache") == ["model.ckpt"]  # no .part left behind
    assert download_checkpoint(url, sha, str(tmp_path / "cache"), progress=False) == path
    assert len(server.requests) == 1  # the verified cached file is used, not fetched again


def test_bad_digest_deletes_the_file_and_names_both_digests(served, tmp_path):
    url, actual = served
    wrong = "0" * 64
    with pytest.raises(ChecksumError, match=f"expected {wrong}, got {actual}"):
        download_checkpoint(url, wrong, str(tmp_path / "cache"), progress=False)
    assert os.listdir(tmp_path / "cache") == []


def test_interrupted_download_resumes_with_a_range_request(served, server, payload, tmp_path):
    url, sha = served
    server.cut_after = 1 << 20
    with pytest.raises(DownloadError, match=r"interrupted at 1048576 of 3145728 bytes"):
        download_checkpoint(url, sha, str(tmp_path), progress=False)
    assert os.path.getsize(tmp_path / "model.ckpt.part") == 1 << 20
    assert not (tmp_path / "model.ckpt").exists()  # nothing that looks complete
    path = download_checkpoint(url, sha, str(tmp_path), progress=False)
    assert server.requests == [("/files/model.ckpt", None), ("/files/model.ckpt", "bytes=1048576-")]
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == sha


def test_server_without_range_support_restarts_from_zero(served, server, tmp_path):
    url, sha = served
    (tmp_path / "model.ckpt.part").write_bytes(b"stale bytes")
    server.no_range = True
    path = download_checkpoint(url, sha, str(tmp_path), progress=False)
    assert server.requests == [("/files/model.ckpt", "bytes=11-")]
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == sha


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="cannot connect"):
        download_checkpoint("http://127.0.0.1:9/x.ckpt", "0" * 64, str(tmp_path), timeout=5, progress=False)


def test_the_published_file_name_is_checked_against_the_card():
    cfg = make_config()
    local = "/somewhere/nasfpn_ascend_v160_coco2017_research_cv_mAP41.51.ckpt"
    assert expected_sha256(cfg, local) == PUBLISHED_SHA
    assert expected_sha256(cfg, "/somewhere/mine.ckpt") == ""
    assert expected_sha256(cfg.replace(checkpoint_sha256="AB" * 32), local) == "ab" * 32
    with pytest.raises(ValueError, match="give its --checkpoint_sha256"):
        published_checkpoint(cfg.replace(hub_url="http://127.0.0.1:9/other.ckpt"))


def test_create_network_rejects_an_unknown_name():
    from mindspore_hub_conf import create_network

    with pytest.raises(ValueError, match="unknown network name 'retinanet'.*nasfpn"):
        create_network("retinanet")


def test_create_network_takes_config_overrides():
    import mindspore.nn as nn
    from mindspore.nn.utils import no_init_parameters
    from mindspore_hub_conf import create_network

    with no_init_parameters():  # names and shapes only
        net = create_network(
            "NAS-FPN",
            img_shape=[128, 128],
            backbone_depth=18,
            fpn_stages=1,
            fpn_channels=64,
            head_convs=1,
            anchor_size=[8, 16, 32, 64, 128],
            num_classes=4,
        )
    assert isinstance(net, nn.Cell)
    shapes = {p.name: tuple(p.shape) for p in net.get_parameters()}
    assert shapes["network.backbone.conv1.weight"] == (64, 3, 7, 7)
    assert shapes["network.head.multi_cls_layers.0.feats.2.weight"][0] == 9 * 4


@pytest.fixture(scope="module")
def hub_network():
    """The hub's network, its parameters uninitialised: the test reads names, then loads a file."""
    from mindspore.nn.utils import no_init_parameters
    from mindspore_hub_conf import create_network

    with no_init_parameters():
        return create_network("nasfpn")


@pytest.mark.slow
def test_hub_network_has_the_manifest_names_and_loads_a_downloaded_checkpoint(
    hub_network, manifest_rows, release_ckpt, server, tmp_path
):
    import mindspore as ms
    from nasfpn.model_files.checkpoint import load_checkpoint_into

    assert {p.name: tuple(p.shape) for p in hub_network.get_parameters()} == {
        name: tuple(shape) for name, shape, _ in manifest_rows
    }
    server.files["/models/r1.6/release.ckpt"] = release_ckpt
    sha = hashlib.sha256(open(release_ckpt, "rb").read()).hexdigest()
    cfg = make_config(
        f"--hub_url=http://127.0.0.1:{server.server_port}/models/r1.6/release.ckpt",
        f"--checkpoint_sha256={sha}",
        f"--hub_cache_dir={tmp_path}",
    )
    path = published_checkpoint(cfg, progress=False)
    assert path == str(tmp_path / "release.ckpt")
    ignored = load_checkpoint_into(hub_network, path, expected_sha256=sha)
    assert "global_step" in ignored and all(not n.startswith("network.") for n in ignored)
    name = "network.head.multi_cls_layers.4.feats.8.weight"
    expected = ms.load_checkpoint(release_ckpt)[name].asnumpy()
    got = {p.name: p for p in hub_network.get_parameters()}[name].asnumpy()
    np.testing.assert_array_equal(got, expected)
    shutil.rmtree(tmp_path)  # 0.7 GB


# A cached hub download is re-checked against its sha256 before use: a corrupted or truncated
# cached file is replaced by a fresh download from the (local) server; a good one is used as is.


def _corrupt(data):
    """The same bytes with one bit flipped in the middle."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


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
