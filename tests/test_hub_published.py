"""published_checkpoint end to end on a hub card written here (URL on a loopback server), the card
reader's errors, verify_sha256, and the download timeout and progress options (fast: no network
is built; the full hub network test is in tests/test_hub.py)."""

import errno
import hashlib
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nasfpn.core.files import ChecksumError, verify_sha256
from nasfpn.inference.hub import (
    DownloadError,
    download_checkpoint,
    expected_sha256,
    file_name_of,
    published_checkpoint,
    read_card,
)
from tests.conftest import make_config

PAYLOAD = bytes(range(256)) * 40


class Handler(BaseHTTPRequestHandler):
    """Serves PAYLOAD at /files/*, 404 elsewhere; waits server.stall seconds before answering;
    honours 'Range: bytes=N-' (206, or 416 past the end) when server.ranges is set."""

    def do_GET(self):
        time.sleep(self.server.stall)
        if not self.path.startswith("/files/"):
            self.send_error(404)
            return
        start = 0
        asked = self.headers.get("Range")
        if asked and self.server.ranges:
            start = int(asked[len("bytes=") : -1])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.end_headers()
                return
        self.send_response(206 if start else 200)
        if not self.server.no_length:
            self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        self.wfile.write(PAYLOAD[start:])

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.stall = 0.0
    httpd.ranges = True
    httpd.no_length = False
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def card_text(url, sha256, fmt="ckpt"):
    return (
        f"# test card\n\n---\n\nmodel-name: test\n\nasset:\n\n-\n  file-format: {fmt}\n"
        f"  asset-link: {url}\n  asset-sha256: {sha256}\n\n---\n\n## Notes\n"
    )


def write_card(tmp_path, text, name="card.md"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def url_of(server, name):
    return f"http://127.0.0.1:{server.server_address[1]}/files/{name}"


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_default_url_and_digest_come_from_the_card(server, tmp_path, capsys):
    card = write_card(tmp_path, card_text(url_of(server, "model.ckpt"), SHA.upper()))
    cfg = make_config(f"--hub_cache_dir={tmp_path / 'cache'}")
    path = published_checkpoint(cfg, card_path=card, progress=False)
    assert path == str(tmp_path / "cache" / "model.ckpt")
    with open(path, "rb") as f:
        assert f.read() == PAYLOAD
    assert capsys.readouterr().err == ""
    other = published_checkpoint(cfg.replace(hub_cache_dir=str(tmp_path / "c2")), card_path=card)
    assert other == str(tmp_path / "c2" / "model.ckpt")
    assert "model.ckpt" in capsys.readouterr().err  # the progress bar is on by default


def test_another_url_needs_and_uses_its_digest(server, tmp_path):
    card = write_card(tmp_path, card_text(url_of(server, "model.ckpt"), "0" * 64))
    other = url_of(server, "other.ckpt")
    cfg = make_config(f"--hub_cache_dir={tmp_path / 'c'}", f"--hub_url={other}")
    with pytest.raises(ValueError, match="is not the published file: give its --checkpoint_sha256"):
        published_checkpoint(cfg, card_path=card, progress=False)
    path = published_checkpoint(cfg.replace(checkpoint_sha256=SHA), card_path=card, progress=False)
    assert os.path.basename(path) == "other.ckpt" and os.path.getsize(path) == len(PAYLOAD)


def test_download_timeout_is_passed_on(server, tmp_path):
    card = write_card(tmp_path, card_text(url_of(server, "slow.ckpt"), SHA))
    cfg = make_config(f"--hub_cache_dir={tmp_path}", "--download_timeout=0.3")
    server.stall = 2.0
    try:
        start = time.monotonic()
        with pytest.raises(DownloadError):
            published_checkpoint(cfg, card_path=card, progress=False)
        assert time.monotonic() - start < 1.8
    finally:
        server.stall = 0.0


def test_card_url_with_a_query_is_recognised_by_url(tmp_path):
    url = "https://example.invalid/models/net.ckpt?version=2"
    card = write_card(tmp_path, card_text(url, "ab" * 32))
    cfg = make_config()
    assert expected_sha256(cfg, url, card) == "ab" * 32
    assert expected_sha256(cfg, "/data/net.ckpt", card) == "ab" * 32  # same file name
    assert expected_sha256(cfg, "/data/other.ckpt", card) == ""


def test_card_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "none.md")
    with pytest.raises(FileNotFoundError, match=f"^hub card not found: {missing}$"):
        read_card(missing)
    flat = write_card(tmp_path, "# no fields here\n", "flat.md")
    with pytest.raises(ValueError, match=f"^{flat}: expected the card's fields between two '---' lines$"):
        read_card(flat)
    no_asset = write_card(tmp_path, "# c\n\n---\n\nmodel-name: x\n\n---\n", "no_asset.md")
    with pytest.raises(ValueError, match=f"^{no_asset}: no 'asset' entry with file-format: ckpt$"):
        read_card(no_asset)
    mindir_only = write_card(
        tmp_path, card_text("https://x.invalid/a.mindir", "0" * 64, "mindir"), "mindir.md"
    )
    with pytest.raises(ValueError, match="no 'asset' entry with file-format: ckpt"):
        read_card(mindir_only)


def test_verify_sha256(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    assert verify_sha256(str(path), f"  {SHA.upper()}\n") == SHA
    with pytest.raises(ChecksumError) as info:
        verify_sha256(str(path), " " + "AB" * 32)
    assert str(info.value) == f"{path}: sha256 mismatch: expected {'ab' * 32}, got {SHA}"
    with pytest.raises(FileNotFoundError, match=f"^checkpoint not found: {tmp_path / 'no.bin'}$"):
        verify_sha256(str(tmp_path / "no.bin"), SHA)


def test_resume_and_restart_are_logged(server, tmp_path, caplog):
    url = url_of(server, "r.ckpt")
    (tmp_path / "r.ckpt.part").write_bytes(PAYLOAD[:1000])
    with caplog.at_level(logging.INFO, logger="nasfpn"):
        download_checkpoint(url, SHA, str(tmp_path), progress=False)
    assert f"resuming {url} at byte 1000" in caplog.messages
    caplog.clear()
    (tmp_path / "r.ckpt").unlink()
    (tmp_path / "r.ckpt.part").write_bytes(PAYLOAD[:1000])
    server.ranges = False
    try:
        with caplog.at_level(logging.INFO, logger="nasfpn"):
            path = download_checkpoint(url, SHA, str(tmp_path), progress=False)
    finally:
        server.ranges = True
    assert f"{url}: server does not resume (HTTP 200); downloading from the start" in caplog.messages
    with open(path, "rb") as f:
        assert f.read() == PAYLOAD


def test_a_complete_partial_file_is_finished_on_http_416(server, tmp_path):
    (tmp_path / "done.ckpt.part").write_bytes(PAYLOAD)
    path = download_checkpoint(url_of(server, "done.ckpt"), SHA, str(tmp_path), progress=False)
    assert path == str(tmp_path / "done.ckpt") and not (tmp_path / "done.ckpt.part").exists()


def test_http_errors_are_download_errors_even_when_resuming(server, tmp_path):
    url = f"http://127.0.0.1:{server.server_address[1]}/missing/x.ckpt"
    for partial in (False, True):
        if partial:
            (tmp_path / "x.ckpt.part").write_bytes(b"abc")
        with pytest.raises(DownloadError) as info:
            download_checkpoint(url, SHA, str(tmp_path), progress=False)
        assert str(info.value) == f"{url}: HTTP 404 Not Found"


def test_connection_failures_give_the_reason(server, tmp_path):
    url = "http://127.0.0.1:9/x.ckpt"  # nothing listens on the discard port
    with pytest.raises(DownloadError) as info:
        download_checkpoint(url, SHA, str(tmp_path), timeout=5, progress=False)
    assert str(info.value) == (
        f"{url}: cannot connect ([Errno {errno.ECONNREFUSED}] Connection refused); check the "
        "network, or download the file yourself and pass --checkpoint_path"
    )
    server.stall = 1.0  # connects, then no answer within the timeout
    try:
        with pytest.raises(DownloadError, match=r": cannot connect \(timed out\); check"):
            download_checkpoint(url_of(server, "t.ckpt"), SHA, str(tmp_path), timeout=0.2, progress=False)
    finally:
        server.stall = 0.0


def test_progress_bar_shows_kibibytes_of_the_total_also_when_resuming(server, tmp_path, capsys):
    download_checkpoint(url_of(server, "p.ckpt"), SHA, str(tmp_path / "a"))  # progress by default
    err = capsys.readouterr().err
    assert "100%" in err and "10.0k/10.0k" in err and "B/s" in err  # 10240 bytes, 1024-based units
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "p.ckpt.part").write_bytes(PAYLOAD[:4096])
    download_checkpoint(url_of(server, "p.ckpt"), SHA, str(tmp_path / "b"), progress=True)
    assert "100%" in capsys.readouterr().err  # counted from the resumed offset


def test_a_response_without_content_length_is_read_to_the_end(server, tmp_path):
    server.no_length = True
    try:
        path = download_checkpoint(url_of(server, "n.ckpt"), SHA, str(tmp_path), progress=False)
    finally:
        server.no_length = False
    assert os.path.getsize(path) == len(PAYLOAD)


def test_download_messages(server, tmp_path, caplog):
    url = url_of(server, "m.ckpt")
    with pytest.raises(ValueError, match=f"^{url}: an expected sha256 is required to download a checkpoint$"):
        download_checkpoint(url, "", str(tmp_path))
    with pytest.raises(ValueError, match="^http://127.0.0.1/: the URL names no file$"):
        file_name_of("http://127.0.0.1/")
    with pytest.raises(ChecksumError) as info:
        download_checkpoint(url, "0" * 64, str(tmp_path), progress=False)
    assert str(info.value) == (
        f"{url}: sha256 mismatch: expected {'0' * 64}, got {SHA}; the downloaded file was deleted"
    )
    final = tmp_path / "m.ckpt"
    final.write_bytes(b"stale")
    with caplog.at_level(logging.WARNING, logger="nasfpn"):
        download_checkpoint(url, SHA, str(tmp_path), progress=False)
    assert f"{final}: cached file has the wrong sha256; downloading it again" in caplog.messages
