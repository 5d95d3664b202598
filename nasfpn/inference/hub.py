"""The published checkpoint: its hub card and a resumable download verified by sha256.

The card (hub/nasfpn.md, MindSpore Hub format: YAML between '---' lines) is the one place that
states the published file's URL and sha256; the downloader and the entry points read it from there.
It ships inside the package as nasfpn/inference/hub_card.md; hub/nasfpn.md is a link to it.
"""

import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from nasfpn.core.errors import UserError, UserFileNotFoundError
from nasfpn.core.files import CHUNK, ChecksumError, sha256_of

DEFAULT_CARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hub_card.md")
log = logging.getLogger("nasfpn")


class DownloadError(UserError, OSError):
    """A download that failed or stopped early (a partial file is kept for resuming)."""


def read_card(path=DEFAULT_CARD):
    """The card's fields (a dict) plus `url` and `sha256` of its ckpt asset."""
    import yaml

    if not os.path.isfile(path):
        raise UserFileNotFoundError(f"hub card not found: {path}")
    with open(path, encoding="utf-8") as f:
        parts = f.read().split("\n---\n")
    if len(parts) < 3:
        raise UserError(f"{path}: expected the card's fields between two '---' lines")
    fields = yaml.safe_load(parts[1])
    assets = [a for a in fields.get("asset", []) if a.get("file-format") == "ckpt"]
    if not assets:
        raise UserError(f"{path}: no 'asset' entry with file-format: ckpt")
    fields["url"] = assets[0]["asset-link"]
    fields["sha256"] = str(assets[0]["asset-sha256"]).lower()
    return fields


def file_name_of(url):
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise UserError(f"{url}: the URL names no file")
    return name


def expected_sha256(inference, path_or_url, card_path=DEFAULT_CARD):
    """The inference section's checkpoint_sha256 when set; else the card's digest when the file is
    the published one (same URL or file name); else '' (no check)."""
    if inference.checkpoint_sha256:
        return inference.checkpoint_sha256.strip().lower()
    card = read_card(card_path)
    same_url = path_or_url == card["url"]
    same_name = os.path.basename(str(path_or_url)) == file_name_of(card["url"])
    return card["sha256"] if same_url or same_name else ""


def _open(url, offset, timeout):
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file already holds everything
            return None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(
            f"{url}: cannot connect ({getattr(exc, 'reason', exc)}); check the "
            "network, or download the file yourself and pass --checkpoint_path"
        ) from None


def _fetch(url, part, timeout, progress):
    """Append the rest of `url` to `part` (HTTP Range from its current size)."""
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    response = _open(url, offset, timeout)
    if response is None:
        return
    with response:
        if offset and response.status != 206:  # the server ignored Range: start again
            log.info("%s: server does not resume (HTTP %d); downloading from the start", url, response.status)
            offset = 0
        elif offset:
            log.info("resuming %s at byte %d", url, offset)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        from tqdm import tqdm

        with (
            open(part, "ab" if offset else "wb") as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=os.path.basename(part),
                disable=not progress,
            ) as bar,
        ):
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
            except OSError as exc:  # a timeout or reset mid-transfer
                raise DownloadError(
                    f"{url}: download interrupted at {out.tell()} bytes ({exc}); "
                    f"the partial file {part} is kept and the next run resumes it"
                ) from None
    size = os.path.getsize(part)
    if total is not None and size < total:
        raise DownloadError(
            f"{url}: download interrupted at {size} of {total} bytes; the partial "
            f"file {part} is kept and the next run resumes it"
        )


def download_checkpoint(url, sha256, cache_dir, file_name=None, timeout=60.0, progress=True):
    """Path of `url` in `cache_dir`, downloading it if absent.

    The file arrives under '<name>.part' (resumed with an HTTP Range request if a previous run
    stopped) and is renamed to its final name only after its sha256 equals `sha256`; on a mismatch
    the file is deleted and ChecksumError names both digests. A cached file is re-checked.
    """
    if not sha256:
        raise UserError(f"{url}: an expected sha256 is required to download a checkpoint")
    sha256 = sha256.strip().lower()
    cache_dir = os.path.expanduser(cache_dir)
    os.makedirs(cache_dir, exist_ok=True)
    final = os.path.join(cache_dir, file_name or file_name_of(url))
    if os.path.isfile(final):
        if sha256_of(final) == sha256:
            return final
        log.warning("%s: cached file has the wrong sha256; downloading it again", final)
        os.remove(final)
    part = final + ".part"
    _fetch(url, part, timeout, progress)
    actual = sha256_of(part)
    if actual != sha256:
        os.remove(part)
        raise ChecksumError(
            f"{url}: sha256 mismatch: expected {sha256}, got {actual}; the downloaded file was deleted"
        )
    os.replace(part, final)
    return final


def published_checkpoint(inference, card_path=DEFAULT_CARD, progress=True):
    """Download (or find in the inference section's hub_cache_dir) its hub_url, default the card's
    URL, checked against its checkpoint_sha256 or the card's digest."""
    url = inference.hub_url or read_card(card_path)["url"]
    sha256 = expected_sha256(inference, url, card_path)
    if not sha256:
        raise UserError(
            f"--hub_url={url} is not the published file: give its "
            "--checkpoint_sha256 so the download can be verified"
        )
    return download_checkpoint(
        url, sha256, inference.hub_cache_dir, timeout=inference.download_timeout, progress=progress
    )
