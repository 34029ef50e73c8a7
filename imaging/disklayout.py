"""What a disk holds, as a file-system-aware image records it, and where the record lives.

A :class:`Layout` is what the node's ``sfdisk`` and ``blkid`` said of its disk when it was saved:
the partition table (``gpt``, ``dos``, or ``none`` for a disk without one, saved as one
pseudo-partition 0 spanning the disk), the bytes before the first partition (label, boot code,
the gap a boot loader uses), and per partition its place, file system, UUID, label, how it is
saved (``partclone.<fs>``; ``partclone.dd`` for a file system partclone does not know; ``swap``,
recreated from its UUID and label; ``none`` for an extended partition, whose boot records the
table restores) and how many bytes its file system uses.

The record travels inside the image: a ``.ptcl.zst`` file ends with two zstd *skippable frames*
(which ``zstd -d`` passes over): the layout as JSON, then a fixed 20-byte footer naming the
JSON's length, so it is read with two small reads from the end (:func:`read_layout`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from . import imagecheck
from .errors import ImageError

FORMAT = "imaging-disk-layout"
VERSION = 1
TRAILER_MAGIC = 0x184D2A5E  # a zstd skippable-frame magic
FOOTER_TAG = b"IMGLAYT1"
FOOTER_SIZE = 20  # magic, length 12, tag, JSON length
MAX_LAYOUT = 1 << 20  # bytes of JSON a layout may take
GPT_BACKUP_SECTORS = 33  # the backup GPT at the disk's end: 32 sectors of entries and its header
EXTENDED_TYPES = {"5", "f", "85"}  # MBR extended partitions: containers of logical ones
SWAP_TYPES = {"swap"}
# blkid's TYPE -> the partclone program that saves and restores it (ext2/3/4 share one engine)
PARTCLONE = {"ext2": "partclone.ext2", "ext3": "partclone.ext3", "ext4": "partclone.ext4", "vfat": "partclone.vfat",
             "ntfs": "partclone.ntfs", "btrfs": "partclone.btrfs", "xfs": "partclone.xfs",
             "exfat": "partclone.exfat", "f2fs": "partclone.f2fs", "hfsplus": "partclone.hfsp",
             "minix": "partclone.minix"}
RAW_METHOD = "partclone.dd"


@dataclass(frozen=True)
class Partition:
    """One partition of a saved disk (number 0: the whole disk, when it has no partition table)."""

    number: int
    start: int  # bytes from the disk's start
    size: int  # bytes
    method: str  # partclone.<fs> | partclone.dd | swap | none
    type: str = ""  # the table's partition type (GUID, or MBR hex)
    fs: str = ""  # blkid's TYPE ("" when none is known)
    uuid: str = ""  # the file system's UUID
    label: str = ""  # the file system's label
    device: str = ""  # its device on the saved node (what partclone read)
    used: int | None = None  # bytes of data the image holds for it (partclone's "Space in use")

    @property
    def saved(self) -> bool:
        """True when the image holds data for this partition (swap and extended ones hold none)."""
        return self.method.startswith("partclone.")

    def describe(self) -> str:
        """``partition 2 (ext4, /dev/sda2)``, for messages."""
        what = ", ".join(x for x in (self.fs or "no known file system", self.device) if x)
        return f"partition {self.number} ({what})" if self.number else f"the whole disk ({what})"


@dataclass(frozen=True)
class Layout:
    """A disk as saved: its table, the bytes before its first partition, its partitions."""

    label: str  # gpt | dos | none
    disk_size: int  # bytes of the saved disk
    sector_size: int
    head: int  # bytes before the first partition, saved as they are
    table: str  # sfdisk --dump without device names ("" for none)
    partitions: tuple[Partition, ...]

    @property
    def needed(self) -> int:
        """The disk size a node needs to take this image: the end of its last partition (and of the
        backup GPT), or the saved disk's size when it has no table."""
        if self.label == "none":
            return self.disk_size
        end = max([self.head, *(p.start + p.size for p in self.partitions)])
        return end + (GPT_BACKUP_SECTORS * self.sector_size if self.label == "gpt" else 0)

    @property
    def used(self) -> int:
        """Bytes of data the image holds: the head, and what each saved file system uses."""
        return self.head + sum(p.used or 0 for p in self.partitions)

    @property
    def logical(self) -> bool:
        """True when the table has an extended partition (holding logical ones)."""
        return any(p.method == "none" for p in self.partitions)

    def with_used(self, used: dict[int, int]) -> Layout:
        """The same layout with the used bytes of each partition that ``used`` names."""
        return replace(self, partitions=tuple(replace(p, used=used.get(p.number, p.used)) for p in self.partitions))

    def to_json(self) -> str:
        """The layout as JSON (with its format name and version)."""
        return json.dumps({"format": FORMAT, "version": VERSION, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> Layout:
        """Parse :meth:`to_json`'s output; ImageError naming ``where`` when it is not one."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("not a disk layout")
            if data.get("version") != VERSION:
                raise ValueError(f"layout version {data.get('version')!r}, this version reads {VERSION}")
            partitions = tuple(Partition(**p) for p in data["partitions"])
            layout = cls(label=str(data["label"]), disk_size=int(data["disk_size"]),
                         sector_size=int(data["sector_size"]), head=int(data["head"]), table=str(data["table"]),
                         partitions=partitions)
            for part in partitions:
                if not (isinstance(part.number, int) and isinstance(part.start, int) and isinstance(part.size, int)
                        and part.start >= 0 and part.size > 0 and isinstance(part.method, str)):
                    raise ValueError(f"partition {part.number!r} is malformed")
                if not re.fullmatch(r"partclone\.[a-z0-9+]+|swap|none", part.method):
                    raise ValueError(f"partition {part.number}: unknown method {part.method!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise ImageError(f"{where}: its disk layout is unreadable ({exc}); save the image again") from None
        return layout


def method_for(fs: str, part_type: str) -> str:
    """How a partition with file system ``fs`` (blkid's TYPE) and table type ``part_type`` is saved."""
    if part_type.lower() in EXTENDED_TYPES:
        return "none"
    if fs in SWAP_TYPES:
        return "swap"
    return PARTCLONE.get(fs, RAW_METHOD)


def strip_devices(dump: str) -> str:
    """``sfdisk --dump`` without its ``device:`` line and with each partition line's device name
    replaced by the partition's number (``1 : start=…``): a table that compares equal across disks."""
    lines = []
    for line in dump.splitlines():
        if line.startswith("device:"):
            continue
        found = re.match(r"\S.*?(\d+)\s+:\s+(start=.*)", line)
        lines.append(f"{found.group(1)} : {found.group(2)}" if found else line.rstrip())
    return "\n".join(lines).strip() + "\n"


def table_for(dump: str, disk: str) -> list[str]:
    """The lines of a stripped dump with each partition named after ``disk`` as Linux names them
    (``/dev/sda1``, ``/dev/nvme0n1p1``), as sfdisk reads a script."""
    lines = []
    for line in dump.splitlines():
        found = re.match(r"(\d+) : (start=.*)", line)
        lines.append(f"{partition_device(disk, int(found.group(1)))} : {found.group(2)}" if found else line)
    return lines


def partition_device(disk: str, number: int) -> str:
    """The device of partition ``number`` of ``disk``: ``p`` between them when the disk's name ends
    in a digit (nvme0n1p1, loop0p1, mmcblk0p1), as the kernel names them."""
    return f"{disk}p{number}" if disk[-1:].isdigit() else f"{disk}{number}"


def from_probe(sfdisk_json: str, dump: str, disk_size: int, filesystems: dict[int, dict[str, str]],
               devices: dict[int, str], whole_disk_fs: dict[str, str] | None) -> Layout:
    """The layout of a node's disk from what it said: ``sfdisk --json`` (empty when the disk has no
    table), ``sfdisk --dump``, its size, blkid's export of each partition (by number) or of the whole
    disk. ValueError when the sfdisk output cannot be read."""
    if not sfdisk_json.strip():
        info = whole_disk_fs or {}
        fs = info.get("TYPE", "")
        part = Partition(0, 0, disk_size, method_for(fs, ""), fs=fs, uuid=info.get("UUID", ""),
                         label=info.get("LABEL", ""), device=devices.get(0, ""))
        return Layout("none", disk_size, 512, 0, "", (part,))
    table = json.loads(sfdisk_json)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    parts = []
    for entry in table.get("partitions", []):
        number = int(re.search(r"(\d+)$", entry["node"]).group(1))  # type: ignore[union-attr]
        info = filesystems.get(number, {})
        fs = info.get("TYPE", "")
        part_type = str(entry.get("type", ""))
        parts.append(Partition(number, int(entry["start"]) * sector, int(entry["size"]) * sector,
                               method_for(fs, part_type), type=part_type, fs=fs, uuid=info.get("UUID", ""),
                               label=info.get("LABEL", ""), device=devices.get(number, entry["node"])))
    parts.sort(key=lambda p: p.start)
    label = str(table["label"])
    first = min((p.start for p in parts if p.method != "none"), default=0)
    minimum = (2 + 32) * sector if label == "gpt" else sector
    head = max(first, minimum) if parts else minimum
    return Layout(label, disk_size, sector, head, strip_devices(dump), tuple(parts))


def parse_export(lines: Iterable[str]) -> dict[str, str]:
    """``blkid -o export`` lines as a dict (TYPE, UUID, LABEL…)."""
    values = {}
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and re.fullmatch(r"[A-Z_]+", key):
            values[key] = value
    return values


def trailer(layout: Layout) -> bytes:
    """The two skippable frames that end a ``.ptcl.zst`` image: the layout's JSON, then the footer."""
    data = layout.to_json().encode()
    return (TRAILER_MAGIC.to_bytes(4, "little") + len(data).to_bytes(4, "little") + data
            + TRAILER_MAGIC.to_bytes(4, "little") + (12).to_bytes(4, "little") + FOOTER_TAG
            + len(data).to_bytes(4, "little"))


def read_layout(path: Path) -> Layout:
    """The layout recorded at the end of image ``path``; ImageError when it has none or it is damaged."""
    missing = (f"{path} has no disk layout at its end (a .ptcl.zst image ends with one): it is truncated or"
               " not an image saved by imaging-save; save it again")
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < FOOTER_SIZE:
                raise ImageError(missing)
            footer = os.pread(handle.fileno(), FOOTER_SIZE, size - FOOTER_SIZE)
            magic, length = int.from_bytes(footer[:4], "little"), int.from_bytes(footer[4:8], "little")
            if magic != TRAILER_MAGIC or length != 12 or footer[8:16] != FOOTER_TAG:
                raise ImageError(missing)
            count = int.from_bytes(footer[16:20], "little")
            start = size - FOOTER_SIZE - 8 - count
            if count > MAX_LAYOUT or start < 0:
                raise ImageError(missing)
            frame = os.pread(handle.fileno(), 8 + count, start)
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from None
    if int.from_bytes(frame[:4], "little") != TRAILER_MAGIC or int.from_bytes(frame[4:8], "little") != count:
        raise ImageError(missing)
    return Layout.from_json(frame[8:], str(path))


def check_image(path: Path) -> imagecheck.Content:
    """A ``.ptcl.zst``: whole zstd frames (:func:`imagecheck.check_zstd`) and a readable layout at its end."""
    content = imagecheck.check_zstd(path)
    layout = read_layout(path)
    return imagecheck.Content("ptcl", content.stored, layout.needed, content.pieces)


def describe(layout: Layout) -> dict[str, Any]:
    """What ``imaging-list -l`` shows of a layout."""
    return {"table": layout.label, "used": layout.used, "needed": layout.needed,
            "partitions": [f"{p.number}:{p.fs or p.method}" for p in layout.partitions]}
