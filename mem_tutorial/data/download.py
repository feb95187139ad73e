"""Checksummed downloads into a user cache, with an error that says what to do when offline.

The cache folder is ``$MEM_TUTORIAL_CACHE`` when set, else ``~/.cache/mem_tutorial``. :func:`fetch` downloads a
URL to a file, checks its SHA-256 before the file takes its final name (a failed or partial download never
looks like a good one) and reuses a cached copy whose checksum matches.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

CACHE_ENV = "MEM_TUTORIAL_CACHE"
#: Set to 1 to forbid downloads (tests, offline machines): a missing file is reported at once.
NO_DOWNLOAD_ENV = "MEM_TUTORIAL_NO_DOWNLOAD"
DEFAULT_CACHE = Path("~/.cache/mem_tutorial")
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60
#: URLs whose download failed (no network) in this process, with the error: not retried (each retry can wait
#: TIMEOUT_S) until :func:`forget_failures` is called, e.g. when a notebook's setup cell is run again.
_FAILED: dict[str, str] = {}


class DownloadError(RuntimeError):
    """A download failed (no network, HTTP error) or gave a file whose SHA-256 is not the expected one."""


def cache_dir() -> Path:
    """The user cache folder (``$MEM_TUTORIAL_CACHE`` or ``~/.cache/mem_tutorial``), created if missing."""
    root = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def downloads_disabled() -> bool:
    """Whether ``$MEM_TUTORIAL_NO_DOWNLOAD`` forbids downloads."""
    return os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def forget_failures() -> None:
    """Allow failed downloads to be tried again."""
    _FAILED.clear()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, sha256: str | None, dest: str | os.PathLike, *, manual_hint: str = "") -> Path:
    """Download ``url`` to ``dest`` unless a copy with the right checksum is already there.

    Args:
        url: where to download from.
        sha256: expected hex digest; ``None`` skips the check (only for files whose digest is unknown; the
            caller must then verify the content another way, e.g. per-file checksums after extraction).
        dest: the file to create; its folder is created if missing.
        manual_hint: extra text for the error message, e.g. how to place the file by hand.

    Returns:
        ``dest`` as a Path.

    Raises:
        DownloadError: when the download fails (offline, HTTP error) or the checksum does not match; the
            message names the URL, the destination and what to do. Downloads are not attempted when
            ``$MEM_TUTORIAL_NO_DOWNLOAD`` is set, nor again after a network failure in this process (until
            :func:`forget_failures`).
    """
    dest = Path(dest).expanduser()
    if dest.exists() and (sha256 is None or sha256_file(dest) == sha256.lower()):
        return dest
    if downloads_disabled():
        raise DownloadError(f"Downloads are disabled ({NO_DOWNLOAD_ENV} is set), so {url} was not fetched to "
                            f"{dest}. {manual_hint}".strip())
    if url in _FAILED:
        raise DownloadError(f"{_FAILED[url]} (not retried: it already failed in this session)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "mem-tutorial"})
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                shutil.copyfileobj(response, out, CHUNK_BYTES)
        if sha256 is not None:
            got = sha256_file(tmp_name)
            if got != sha256.lower():
                raise DownloadError(
                    f"{url} downloaded, but its SHA-256 is {got}, not the expected {sha256}. The file was not "
                    f"kept. {manual_hint}".strip()
                )
        os.replace(tmp_name, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        message = (f"Could not download {url} to {dest} ({exc.__class__.__name__}: {exc}). Check the network "
                   f"connection, or download the file by hand and put it at {dest}. {manual_hint}".strip())
        _FAILED[url] = message
        raise DownloadError(message) from exc
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
    return dest
