"""Helpers on the user's files shared by several stages: image-file suffixes and folder listing,
sha256 digests and their verification."""

import hashlib
import os

from nasfpn.core.errors import UserError, UserFileNotFoundError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
CHUNK = 1 << 20


class ChecksumError(UserError):
    """A file whose sha256 differs from the expected one."""


def is_image_name(name):
    """True for a visible file name with one of IMAGE_SUFFIXES (any case)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def image_files_in(folder):
    """Paths of the image files directly in `folder`, sorted by name; hidden files and
    sub-folders are left out. An empty list when there are none."""
    return [
        os.path.join(folder, name)
        for name in sorted(os.listdir(folder))
        if is_image_name(name) and os.path.isfile(os.path.join(folder, name))
    ]


def sha256_of(path, chunk=CHUNK):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path, expected):
    """Raise ChecksumError naming the file and both digests unless sha256(path) == expected."""
    if not os.path.isfile(path):
        raise UserFileNotFoundError(f"checkpoint not found: {path}")
    actual = sha256_of(path)
    if actual.lower() != expected.strip().lower():
        raise ChecksumError(f"{path}: sha256 mismatch: expected {expected.strip().lower()}, got {actual}")
    return actual
