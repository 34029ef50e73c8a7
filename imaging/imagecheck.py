"""What an image file holds, checked before any node is touched.

A load that starts from a bad file fails late and badly: an empty image
"loads" and leaves a node with no OS, a truncated ``.img.zst`` kills the
receiver mid-transfer.  These checks read only headers, never the data:

* ``.img.zst`` (zstd, RFC 8878): every frame is walked without decompressing
  it, frame header, then each block header (its size and last-block bit),
  then the optional checksum; skippable frames are stepped over.  A file that
  ends inside a frame is truncated; anything after the last frame that is not
  a frame is corrupt.  When the frame headers give the content size, it must
  fit what the blocks can hold, and it is the size the image fills on a disk.
* ``.ndz`` (Emulab's imagezip): a sequence of 1 MiB chunks, each starting
  with a block header whose first word is the format's magic/version
  (``0x69696969`` + version - 1, little-endian); every chunk's header is read.
* raw ``.img``: not empty, and not a compressed file under a raw name.

Each check takes a path and returns a :class:`Content`, or raises
:class:`~imaging.errors.ImageError` with one line naming the file, what is
wrong and what to do.  A 10 GB image costs one small read per zstd block
(128 KiB of data at most) or per 1 MiB chunk, with read-ahead switched off.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ImageError

ZSTD_MAGIC = 0xFD2FB528
SKIPPABLE_FIRST, SKIPPABLE_LAST = 0x184D2A50, 0x184D2A5F  # skippable frames: 16 magics
BLOCK_MAX = 128 * 1024  # a zstd block holds and regenerates at most this many bytes
BLOCK_RAW, BLOCK_RLE, BLOCK_COMPRESSED, BLOCK_RESERVED = range(4)

NDZ_MAGIC_FIRST, NDZ_MAGIC_LAST = 0x69696969, 0x6969696C  # imagezip versions 1 to 4
NDZ_CHUNK = 1024 * 1024  # imagezip pads every chunk to this size
NDZ_HEADER = struct.Struct("<9I")  # the version 2 block header: magic, size, index, total, regionsize, …
NDZ_SECTOR = 512

WINDOW = 4096  # bytes read at a time: one page, enough for many small blocks
CORRUPT_FIX = "save it again or check the copy"

# the first bytes of files people mistake for images: (signature, format, the extension it loads under)
SIGNATURES: tuple[tuple[bytes, str, str | None], ...] = (
    (ZSTD_MAGIC.to_bytes(4, "little"), "zstd", ".img.zst"),
    (b"\x1f\x8b", "gzip", None),
    (b"\xfd7zXZ\x00", "xz", None),
    (b"BZh", "bzip2", None),
    (b"\x04\x22\x4d\x18", "lz4", None),
    *((v.to_bytes(4, "little"), "frisbee (imagezip)", ".ndz") for v in range(NDZ_MAGIC_FIRST, NDZ_MAGIC_LAST + 1)),
)


@dataclass(frozen=True)
class Content:
    """What an image file holds, as far as its headers tell."""

    format: str  # "zstd", "ndz" or "raw"
    stored: int  # bytes of the file
    size: int | None  # bytes it writes on a disk, when the file says
    pieces: int  # zstd frames, ndz chunks; 1 for a raw image


class _Reader:
    """Small reads at any offset of an open file, from a one-page window."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.start = 0
        self.window = b""

    def at(self, offset: int, count: int) -> bytes:
        """Up to ``count`` bytes at ``offset`` (fewer at the end of the file)."""
        start = offset - self.start
        if start < 0 or start + count > len(self.window):
            self.window = os.pread(self.fd, max(count, WINDOW), offset)
            self.start, start = offset, 0
        return self.window[start:start + count]


def _open(path: Path) -> tuple[int, int]:
    """A read-only descriptor of a regular file and its size; ImageError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the check
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ImageError(f"{path} is not a regular file; name an image file")
    with contextlib.suppress(AttributeError, OSError):  # read the headers, not the data around them
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    return fd, info.st_size


def _with_file(path: Path, walk: Callable[[Path, _Reader], Content]) -> Content:
    fd, size = _open(path)
    try:
        if size == 0:
            raise ImageError(f"{path} is empty (0 bytes): loading it would leave the nodes with no OS;"
                             " save the image again or choose another")
        return walk(path, _Reader(fd, size))
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _signature(head: bytes) -> tuple[str, str | None] | None:
    """``(format, extension)`` of a known file format the first bytes show, else None."""
    return next(((name, ext) for signature, name, ext in SIGNATURES if head.startswith(signature)), None)


def _what_it_is(head: bytes) -> str:
    """What a file's first bytes say it is, as a clause: a known format, else the bytes in hex."""
    known = _signature(head)
    if known is not None:
        return f"it is a {known[0]} file" + (f": name it {known[1]}" if known[1] else "")
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        return "it is a raw disk with a boot sector: name it .img"
    return f"it starts with {head[:8].hex(' ')}"


def _corrupt(path: Path, what: str) -> ImageError:
    return ImageError(f"{path} is corrupt: {what}; {CORRUPT_FIX}")


def check_raw(path: Path) -> Content:
    """A raw ``.img``: not empty, and not a compressed file named like a raw disk."""
    def walk(path: Path, reader: _Reader) -> Content:
        known = _signature(reader.at(0, 8))
        if known is not None:
            fix = f"name it {known[1]}" if known[1] else "decompress it"
            raise ImageError(f"{path} is a {known[0]} file, not a raw disk (a .img image is written to the"
                             f" disk as it is); {fix}")
        return Content("raw", reader.size, reader.size, 1)
    return _with_file(path, walk)


def check_zstd(path: Path) -> Content:
    """A ``.img.zst``: every zstd frame complete, its declared content size plausible."""
    return _with_file(path, _walk_zstd)


def _walk_zstd(path: Path, reader: _Reader) -> Content:
    end = reader.size
    head = reader.at(0, 512)
    first = int.from_bytes(head[:4], "little")
    if first != ZSTD_MAGIC and not SKIPPABLE_FIRST <= first <= SKIPPABLE_LAST:
        raise ImageError(f"{path} is not a zstd file ({_what_it_is(head)}); a .img.zst image is made by"
                         " zstd: compress the disk again or rename the file")
    offset, frames, total, all_declared, compressed = 0, 0, 0, True, 0
    while offset < end:
        magic = int.from_bytes(reader.at(offset, 4), "little")
        if magic == ZSTD_MAGIC:
            offset, declared, low, blocks = _walk_frame(path, reader, offset)
            compressed += blocks
            frames += 1
            if declared is None:
                all_declared = False
                total += low
            else:
                total += declared
        elif SKIPPABLE_FIRST <= magic <= SKIPPABLE_LAST:
            length = reader.at(offset + 4, 4)
            if len(length) < 4:
                raise _truncated(path, end, offset)
            start, offset = offset, offset + 8 + int.from_bytes(length, "little")
            if offset > end:
                raise _truncated(path, end, start)
        else:
            raise _corrupt(path, f"the data at byte {offset} is not a zstd frame"
                                 f" ({_what_it_is(reader.at(offset, 8))})")
    if frames == 0:
        raise _corrupt(path, "it holds no zstd frame, only skippable ones")
    if total == 0 and (all_declared or compressed == 0):
        raise ImageError(f"{path} holds an empty disk: its zstd frames decompress to 0 bytes;"
                         " save the image again or choose another")
    return Content("zstd", end, total if all_declared else None, frames)


def _truncated(path: Path, end: int, frame: int) -> ImageError:
    return ImageError(f"{path} is truncated: it ends inside a zstd frame at byte {end}"
                      f" (the frame starts at byte {frame}); {CORRUPT_FIX}")


def _walk_frame(path: Path, reader: _Reader, start: int) -> tuple[int, int | None, int, int]:
    """Step over the frame at ``start``: ``(its end, declared content size or None,
    bytes its raw and RLE blocks regenerate, number of compressed blocks)``."""
    end = reader.size
    header = reader.at(start + 4, 14)
    if not header:
        raise _truncated(path, end, start)
    descriptor = header[0]
    if descriptor & 0x08:
        raise _corrupt(path, f"the zstd frame at byte {start} sets a reserved bit")
    single_segment = bool(descriptor & 0x20)
    dictionary_bytes = (0, 1, 2, 4)[descriptor & 0x03]
    size_bytes = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    size_at = 1 + (0 if single_segment else 1) + dictionary_bytes
    if len(header) < size_at + size_bytes:
        raise _truncated(path, end, start)
    declared: int | None = None
    if size_bytes:
        declared = int.from_bytes(header[size_at:size_at + size_bytes], "little") + (256 if size_bytes == 2 else 0)
    offset = start + 4 + size_at + size_bytes
    exact, compressed = 0, 0
    while True:
        block = reader.at(offset, 3)
        if len(block) < 3:
            raise _truncated(path, end, start)
        value = int.from_bytes(block, "little")
        kind, length = (value >> 1) & 3, value >> 3
        if kind == BLOCK_RESERVED or length > BLOCK_MAX:
            why = ("a reserved block type" if kind == BLOCK_RESERVED
                   else f"a block of {length} bytes (at most {BLOCK_MAX})")
            raise _corrupt(path, f"the zstd frame at byte {start} has {why} at byte {offset}")
        offset += 3 + (1 if kind == BLOCK_RLE else length)
        if kind == BLOCK_COMPRESSED:
            compressed += 1
        else:
            exact += length
        if value & 1:
            break
    offset += 4 if descriptor & 0x04 else 0  # the content checksum
    if offset > end:  # the last block or the checksum goes past the end
        raise _truncated(path, end, start)
    if declared is not None and not exact <= declared <= exact + compressed * BLOCK_MAX:
        raise _corrupt(path, f"the zstd frame at byte {start} declares {declared} bytes of content,"
                             f" but its blocks hold {exact} to {exact + compressed * BLOCK_MAX}")
    return offset, declared, exact, compressed


def check_ndz(path: Path) -> Content:
    """A ``.ndz``: whole 1 MiB chunks, each with an imagezip block header in order."""
    return _with_file(path, _walk_ndz)


def _walk_ndz(path: Path, reader: _Reader) -> Content:
    head = reader.at(0, 512)
    magic = int.from_bytes(head[:4], "little")
    if not NDZ_MAGIC_FIRST <= magic <= NDZ_MAGIC_LAST:
        raise ImageError(f"{path} is not a frisbee image ({_what_it_is(head)}); a .ndz image is made by"
                         " imagezip: save it again with the frisbee transport, or rename it")
    size = reader.size
    if size % NDZ_CHUNK:
        raise ImageError(f"{path} is truncated: it ends inside chunk {size // NDZ_CHUNK} at byte {size}"
                         f" (frisbee chunks are {NDZ_CHUNK} bytes); {CORRUPT_FIX}")
    version_1 = magic == NDZ_MAGIC_FIRST
    for number in range(size // NDZ_CHUNK):
        offset = number * NDZ_CHUNK
        found, data, index, _, regions, _, _, last, _ = NDZ_HEADER.unpack(reader.at(offset, NDZ_HEADER.size))
        where = f"chunk {number} at byte {offset}"
        if found != magic:
            raise _corrupt(path, f"{where} has no imagezip header (magic {found:#x}, not {magic:#x})")
        if not version_1 and index != number:
            raise _corrupt(path, f"{where} says it is chunk {index}")
        if not 0 < regions < NDZ_CHUNK or data > NDZ_CHUNK - regions:
            raise _corrupt(path, f"{where} declares {data} bytes of data and {regions} of regions,"
                                 f" more than a chunk holds")
    # chunks follow the disk: the last one ends where the image's sectors end
    return Content("ndz", size, None if version_1 else last * NDZ_SECTOR, size // NDZ_CHUNK)
