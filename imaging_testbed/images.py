"""Small test disk images, made without root or loop devices.

An image holds ``/etc/imaging-image`` with an identity line
``imaging-test-image <name> <random id>``.  It is either a FAT file system
(``mkfs.vfat -C``, a "superfloppy": no partition table) padded with zeros
to the wanted size, ``mcopy`` putting the identity there; or, ``partitioned``,
a disk of :mod:`.disks` (partition table, FAT, ext4 with files, swap) whose
FAT and ext4 both hold it.  An emulated node reads that line back with
``mtype`` to know which OS its disk holds (:func:`read_identity` finds it
in either kind).  Images can be raw (``.img``) or zstd-compressed
(``.img.zst``); made images are cached by name, size and kind.
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

from . import disks
from .disks import IDENTITY_FILE as IDENTITY_FILE  # where it always was for the callers
from .procs import run
from .programs import MCOPY, MKFS_VFAT, MMD, MTYPE, SFDISK, ZSTD

log = logging.getLogger(__name__)

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
    """The identity line of the raw image or disk in ``path``: from the FAT that fills it (a
    superfloppy), else from the first FAT partition that holds one; None when it holds none."""
    line = await _identity_at(path, None)
    if line is not None:
        return line
    try:
        table = json.loads(await run(SFDISK, "--json", str(path), check=False) or "{}")
        entries = table.get("partitiontable", {})
        sector = int(entries.get("sectorsize", 512))
        starts = [int(entry["start"]) * sector for entry in entries.get("partitions", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    for start in starts:
        line = await _identity_at(path, start)
        if line is not None:
            return line
    return None


async def _identity_at(path: Path, offset: int | None) -> str | None:
    """The identity line in the FAT at byte ``offset`` of ``path`` (None: the whole file), if any."""
    target = str(path) if offset is None else f"{path}@@{offset}"
    out = await run(MTYPE, "-i", target, f"::{IDENTITY_FILE}", check=False, env=MTOOLS_ENV)
    line = out.strip()
    return line if line.startswith(IDENTITY_PREFIX + " ") else None


async def make_image(name: str, directory: Path, size_mib: int = 8, compressed: bool = False,
                     cache_dir: Path | None = None, random_fill: bool = False,
                     partitioned: bool = False) -> TestImage:
    """Make ``directory/<name>.img`` (or ``.img.zst``) of ``size_mib`` MiB of disk.

    A FAT file system then zeros, or random bytes with ``random_fill`` (an
    image that does not compress, for real transfers).  ``partitioned``: a
    disk of :func:`.disks.make_disk` (gpt; FAT, ext4 with 8 MiB of random
    files, swap; at least 41 MiB) whose files derive from the identity;
    ``random_fill`` fills its file systems' free space with deleted data.

    With ``cache_dir``, an image of the same name, size and kind made before
    is copied from there instead (same identity and checksums).  Returns the
    image's path, checksums and identity.
    """
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".img.zst" if compressed else ".img"
    target = directory / f"{name}{suffix}"
    if cache_dir is not None:
        key = f"{name}-{size_mib}M{'-part' * partitioned}{'-random' * random_fill}{suffix}"
        cached = cache_dir / key
        meta = cache_dir / f"{key}.json"
        if not (cached.exists() and meta.exists()):
            cache_dir.mkdir(parents=True, exist_ok=True)
            made = await _make(name, cache_dir, key, size_mib, compressed, random_fill, partitioned)
            meta.write_text(json.dumps({**asdict(made), "path": str(made.path)}))
        info = json.loads(meta.read_text())
        shutil.copyfile(cached, target)
        return TestImage(**{**info, "path": target})
    return await _make(name, directory, target.name, size_mib, compressed, random_fill, partitioned)


def disk_spec(size_mib: int, identity: str, random_fill: bool = False) -> disks.DiskSpec:
    """The disk of a partitioned test image: :class:`.disks.DiskSpec`'s defaults, its seed derived
    from the identity (each image its own files), its free space dirtied with ``random_fill``."""
    seed = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:4], "big")
    return disks.DiskSpec(size_mib, seed=seed, deleted_mib=size_mib if random_fill else 0)


async def _make(name: str, directory: Path, filename: str, size_mib: int, compressed: bool,
                random_fill: bool, partitioned: bool = False) -> TestImage:
    """Build one image under ``directory/filename``."""
    target = directory / filename
    raw = directory / f".{filename}.raw"
    for stale in (raw, target):
        stale.unlink(missing_ok=True)
    identity = new_identity(name)
    if partitioned:
        await disks.make_disk(raw, disk_spec(size_mib, identity, random_fill), identity)
    else:
        await write_fat(raw, size_mib * MIB, identity, random_fill)
    raw_sha = sha256_file(raw)
    if compressed:
        await run(ZSTD, "-q", "-f", "--rm", "-o", str(target), str(raw))
    else:
        raw.replace(target)
    log.info("made test image %s (%s)", target, identity)
    return TestImage(target, sha256_file(target), raw_sha, size_mib * MIB, identity)
