"""Small test disk images, made without root or loop devices.

An image is a FAT file system (``mkfs.vfat -C``) holding ``/etc/imaging-image``
with an identity line ``imaging-test-image <name> <random id>`` (``mcopy``
puts it there), padded with zeros to the wanted size.  An emulated node
reads that line back with ``mtype`` to know which OS its disk holds.
Images can be raw (``.img``) or zstd-compressed (``.img.zst``); made
images are cached by name and size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .procs import run
from .programs import MCOPY, MKFS_VFAT, MMD, MTYPE, ZSTD

log = logging.getLogger(__name__)

IDENTITY_FILE = "/etc/imaging-image"
IDENTITY_PREFIX = "imaging-test-image"
FAT_MAX_KIB = 1024  # the file system proper; the rest of the image is padding
MIB = 1024 * 1024
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


@dataclass(frozen=True)
class TestImage:
    """A test image file and what it holds."""

    __test__ = False  # not a pytest test class

    path: Path
    sha256: str  # of the file as stored (compressed or not)
    raw_sha256: str  # of the disk bytes it decompresses to
    raw_size: int  # bytes
    identity: str  # the line in /etc/imaging-image


def sha256_file(path: Path, limit: int | None = None) -> str:
    """The sha256 of a file, or of its first ``limit`` bytes."""
    digest = hashlib.sha256()
    remaining = limit if limit is not None else -1
    with open(path, "rb") as handle:
        while remaining:
            chunk = handle.read(MIB if remaining < 0 else min(MIB, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk) if remaining > 0 else 0
    return digest.hexdigest()


def new_identity(name: str) -> str:
    """A fresh identity line for an image called ``name``."""
    return f"{IDENTITY_PREFIX} {name} {secrets.token_hex(6)}"


async def write_fat(path: Path, size: int, identity: str, random_fill: bool = False) -> None:
    """Write at ``path`` a raw image of ``size`` bytes: a FAT file system holding
    ``identity`` in /etc/imaging-image, then zeros (random bytes with
    ``random_fill``, so that it does not compress).  ``path`` must not exist."""
    if size < 256 * 1024:
        raise ValueError(f"an image of {size} bytes is too small for a FAT file system")
    fat_kib = min(size // 1024, FAT_MAX_KIB)
    await run(MKFS_VFAT, "-C", str(path), str(fat_kib))
    with tempfile.NamedTemporaryFile("w", suffix=".identity") as text:
        text.write(identity + "\n")
        text.flush()
        await run(MMD, "-i", str(path), "::/etc", env=MTOOLS_ENV)
        await run(MCOPY, "-i", str(path), text.name, f"::{IDENTITY_FILE}", env=MTOOLS_ENV)
    os.truncate(path, size)
    if random_fill:
        with open(path, "r+b") as handle:
            handle.seek(fat_kib * 1024)
            for _ in range(fat_kib * 1024, size, MIB):
                handle.write(os.urandom(min(MIB, size - handle.tell())))


async def read_identity(path: Path) -> str | None:
    """The identity line of the image in ``path`` (raw), or None when it holds none."""
    out = await run(MTYPE, "-i", str(path), f"::{IDENTITY_FILE}", check=False, env=MTOOLS_ENV)
    line = out.strip()
    return line if line.startswith(IDENTITY_PREFIX + " ") else None


async def make_image(name: str, directory: Path, size_mib: int = 8, compressed: bool = False,
                     cache_dir: Path | None = None, random_fill: bool = False) -> TestImage:
    """Make ``directory/<name>.img`` (or ``.img.zst``) of ``size_mib`` MiB of disk.

    The space after the file system is zeros, or random bytes with
    ``random_fill`` (an image that does not compress, for real transfers).

    With ``cache_dir``, an image of the same name and size made before is
    copied from there instead (same identity and checksums).  Returns the
    image's path, checksums and identity.
    """
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".img.zst" if compressed else ".img"
    target = directory / f"{name}{suffix}"
    if cache_dir is not None:
        key = f"{name}-{size_mib}M{'-random' * random_fill}{suffix}"
        cached = cache_dir / key
        meta = cache_dir / f"{key}.json"
        if not (cached.exists() and meta.exists()):
            cache_dir.mkdir(parents=True, exist_ok=True)
            made = await _make(name, cache_dir, key, size_mib, compressed, random_fill)
            meta.write_text(json.dumps({**asdict(made), "path": str(made.path)}))
        info = json.loads(meta.read_text())
        shutil.copyfile(cached, target)
        return TestImage(**{**info, "path": target})
    return await _make(name, directory, target.name, size_mib, compressed, random_fill)


async def _make(name: str, directory: Path, filename: str, size_mib: int, compressed: bool,
                random_fill: bool) -> TestImage:
    """Build one image under ``directory/filename``."""
    target = directory / filename
    raw = directory / f".{filename}.raw"
    for stale in (raw, target):
        stale.unlink(missing_ok=True)
    identity = new_identity(name)
    await write_fat(raw, size_mib * MIB, identity, random_fill)
    raw_sha = sha256_file(raw)
    if compressed:
        await run(ZSTD, "-q", "-f", "--rm", "-o", str(target), str(raw))
    else:
        raw.replace(target)
    log.info("made test image %s (%s)", target, identity)
    return TestImage(target, sha256_file(target), raw_sha, size_mib * MIB, identity)
