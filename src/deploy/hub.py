"""The published checkpoint: card facts, sha256 verification (download support lives here too)."""
import hashlib
import os


class ChecksumError(ValueError):
    """A file whose sha256 differs from the expected one."""


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path, expected):
    """Raise ChecksumError naming the file and both digests unless sha256(path) == expected."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    actual = sha256_of(path)
    if actual.lower() != expected.strip().lower():
        raise ChecksumError(f"{path}: sha256 mismatch: expected {expected.strip().lower()}, "
                            f"got {actual}")
    return actual
