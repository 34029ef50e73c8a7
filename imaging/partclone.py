"""File-system-aware disk images, as Clonezilla makes them with the same programs: the node-side
shell commands that read a disk's layout, save it, and restore it, and the reading of what they print.

An image's payload (inside zstd) is the bytes before the first partition, then each saved
partition's image one after another: ``partclone.<fs> -c`` for a file system partclone knows (only
the blocks it uses), ``partclone.dd`` (every byte) for one it does not.  Swap is not saved but
recreated by ``mkswap`` with its UUID and label.  Restoring reads the same stream in the same order
from one pipe: partclone reads exactly its own image, so one multicast session carries a whole disk.
Each partition is restored into the disk at its offset (``-O DISK -E OFFSET``): no partition device
is needed, and the kernel's view of the table (stale until the reset) does not matter.

Before each step the command prints a marker line naming the partition, so a failure is named.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from .disklayout import Layout, Partition, from_probe, parse_export, partition_device, table_for
from .transports.base import Progress, ProgressParser

MARK = "__IMAGING_PART__"
MARK_RE = re.compile(MARK + r" (head|sync|\d+)\s*$")
DUMP_MARK, SIZE_MARK, WHOLE_MARK = "__IMAGING_DUMP__", "__IMAGING_SIZE__", "__IMAGING_WHOLE__"
FS_MARK, DEV_MARK = "__IMAGING_FS__", "__IMAGING_DEV__"
FS_RE, DEV_RE = re.compile(FS_MARK + r" (\d+)$"), re.compile(DEV_MARK + r" (\d+)$")
PROBE_PROGRAMS = ("sfdisk", "blkid")  # what table_probe and fs_probe ask
OPTIONS = "-L /dev/null -B -f 1"  # no log file (the output is the log), progress each second without block
# detail (-f also ends the 2 s partclone otherwise sleeps at its end)
MAX_COMMAND = 3500  # characters: a terminal line holds 4095, the telnet session reads one line
PARTCLONE_FAILED_RE = re.compile(r"[Pp]artclone fail")
COMPLETED_RE = re.compile(r"Completed:\s*([\d.]+)%")
IN_USE_RE = re.compile(r"Space in use:.*=\s*(\d+)\s+Blocks")
BLOCK_SIZE_RE = re.compile(r"Block size:\s*(\d+)\s*Byte")
FAILURE_RE = re.compile(r"[Pp]artclone fail|[Ee]rror exit|[Ee]rror: |No space left|Short write|I/O error|short stream"
                        r"|sfdisk: .*(fail|error|cannot)|mkswap: .*(error|cannot)")


def _echo(word: str) -> str:
    """An echo whose command line does not match what it prints (its marker is quoted in two halves)."""
    return f'echo "{word[:9]}""{word[9:]}"'


def mark(what: str) -> str:
    """The command that prints the marker of step ``what`` (``head`` or a partition number)."""
    return f"{_echo(MARK)} {what} >&2"


def table_probe(disk: str) -> str:
    """The first question to the node: its table as JSON, as a dump, what blkid finds on the whole
    disk, and the disk's size."""
    d = shlex.quote(disk)
    return (f"sfdisk --json {d} 2>/dev/null; {_echo(DUMP_MARK)}; sfdisk --dump {d} 2>/dev/null; {_echo(WHOLE_MARK)};"
            f" blkid -p -o export {d} 2>/dev/null; {_echo(SIZE_MARK)};"
            f" blockdev --getsize64 {d} 2>/dev/null || stat -L -c %s {d}")


def split_table_probe(lines: Iterable[str]) -> tuple[str, str, int | None]:
    """``(json, dump, disk size)`` from what :func:`table_probe` printed; no table (empty json and dump)
    when a file system spans the whole disk (a FAT "superfloppy" looks like an empty MBR to sfdisk)."""
    parts: list[list[str]] = [[], [], [], []]
    section = 0
    for line in lines:
        stripped = line.strip()
        marker = next((m for m in (DUMP_MARK, WHOLE_MARK, SIZE_MARK) if stripped.endswith(m)), None)
        if marker is not None:
            section = (DUMP_MARK, WHOLE_MARK, SIZE_MARK).index(marker) + 1
        else:
            parts[section].append(line)
    sizes = [int(x) for x in "".join(parts[3]).split() if x.isdigit()]
    whole = parse_export(parts[2])
    # what a telnet server says before the shell (its banner) may come first: the JSON starts at "{"
    # (and a shell's prompt before the first line: "# {"): the JSON starts at the first "{"
    first = next((i for i, line in enumerate(parts[0]) if "{" in line), len(parts[0]))
    parts[0] = parts[0][first:]
    if parts[0]:
        parts[0][0] = parts[0][0][parts[0][0].index("{"):]
    dump = next((i for i, line in enumerate(parts[1]) if line.startswith("label:")), len(parts[1]))
    parts[1] = parts[1][dump:]
    if whole.get("TYPE") and not whole.get("PTTYPE"):
        return "", "", sizes[-1] if sizes else None
    return "\n".join(parts[0]), "\n".join(parts[1]), sizes[-1] if sizes else None


def fs_probe(disk: str, places: list[tuple[int, int, int, str]]) -> str:
    """The second question: blkid of each partition ``(number, start, size, device)`` read from the disk
    at its offset, and whether its device exists (partclone saves from it)."""
    d = shlex.quote(disk)
    steps = []
    for number, start, size, device in places:
        where = f"-O {start} -S {size} {d}" if number else d
        steps.append(f"{_echo(FS_MARK)} {number}; blkid -p -o export {where} 2>/dev/null;"
                     f" [ -b {shlex.quote(device)} ] && {_echo(DEV_MARK)} {number}")
    return "; ".join(steps) + "; true"


def places_of(sfdisk_json: str, disk: str, disk_size: int) -> list[tuple[int, int, int, str]]:
    """``(number, start, size, device)`` of each partition of the table (the whole disk when none)."""
    if not sfdisk_json.strip():
        return [(0, 0, disk_size, disk)]
    layout = from_probe(sfdisk_json, "", disk_size, {}, {}, None)
    return [(p.number, p.start, p.size, p.device or partition_device(disk, p.number)) for p in layout.partitions]


def split_fs_probe(lines: Iterable[str]) -> tuple[dict[int, dict[str, str]], set[int]]:
    """blkid's answer per partition number, and the numbers whose device exists."""
    found: dict[int, list[str]] = {}
    devices: set[int] = set()
    current: int | None = None
    for line in lines:
        stripped = line.strip()
        if marked := FS_RE.search(stripped):  # searched: a shell's prompt may precede the first line
            current = int(marked.group(1))
            found[current] = []
        elif marked := DEV_RE.search(stripped):
            devices.add(int(marked.group(1)))
        elif current is not None:
            found[current].append(stripped)
    return {n: parse_export(v) for n, v in found.items()}, devices


def layout_from(sfdisk_json: str, dump: str, disk_size: int, disk: str,
                filesystems: dict[int, dict[str, str]]) -> Layout:
    """The layout of the node's disk once both questions were answered."""
    if not sfdisk_json.strip():
        return from_probe("", "", disk_size, {}, {0: disk}, filesystems.get(0, {}))
    return from_probe(sfdisk_json, dump, disk_size, filesystems, {}, None)


def _check_length(command: str) -> str:
    if len(command) > MAX_COMMAND:
        raise ValueError(f"the command for this disk is {len(command)} characters long, over {MAX_COMMAND}")
    return command


def save_producer(layout: Layout, disk: str) -> str:
    """The node-side command that writes the image's payload on its standard output."""
    d = shlex.quote(disk)
    steps = []
    if layout.label != "none":
        steps += [mark("head"), f"dd if={d} bs={layout.sector_size} count={layout.head // layout.sector_size}"
                                " 2>/dev/null"]
    for part in layout.partitions:
        if not part.saved:
            continue
        source = shlex.quote(part.device or disk)
        steps.append(mark(str(part.number)))
        if part.method == "partclone.dd":
            steps.append(f"partclone.dd -s {source} -o - {OPTIONS}")
        else:
            steps.append(f"{part.method} -c -s {source} -o - {OPTIONS}")
    return _check_length("{ " + " && ".join(steps) + "; }")


def _copy_exactly(count: int, disk: str, offset: int) -> str:
    """Copy the next ``count`` bytes of the stream into ``disk`` at ``offset``, failing when fewer came
    (dd says how many it copied: ``N bytes (…) copied``, in coreutils and busybox alike)."""
    said = "/tmp/imaging-dd"
    return (f"head -c {count} | dd of={disk} bs=1M seek={offset} oflag=seek_bytes conv=notrunc 2>{said}"
            f" && {{ grep -q '^{count} bytes' {said} || {{ echo 'short stream: fewer than {count} bytes came' >&2;"
            " false; }; }")


def _restore_partition(part: Partition, disk: str) -> str:
    d = shlex.quote(disk)
    if part.method == "partclone.dd":
        return _copy_exactly(part.size, d, part.start)
    if part.method == "swap":
        tmp = "/tmp/imaging-swap"
        names = "".join(f" {flag} {shlex.quote(value)}" for flag, value in (("-U", part.uuid), ("-L", part.label))
                        if value)
        return (f"rm -f {tmp} && dd if=/dev/zero of={tmp} bs=1 count=0 seek={part.size} 2>/dev/null"
                f" && mkswap{names} {tmp} >/dev/null 2>&1 && dd if={tmp} of={d} bs=4096 count=1 seek={part.start}"
                f" oflag=seek_bytes conv=notrunc 2>/dev/null && rm -f {tmp}")
    return f"{part.method} -r -s - -O {d} -E {part.start} -C {OPTIONS}"


def save_programs(layout: Layout) -> tuple[str, ...]:
    """The partclone programs :func:`save_producer` runs for ``layout`` (beside ``dd``), each once."""
    return tuple(dict.fromkeys(p.method for p in layout.partitions if p.saved))


def restore_programs(layout: Layout) -> tuple[str, ...]:
    """The programs :func:`restore_consumer` runs for ``layout``, each once."""
    table = ("sfdisk",) if layout.label == "gpt" or layout.logical else ()
    parts = [p.method if p.saved else "mkswap" for p in layout.partitions if p.method != "none"]
    return tuple(dict.fromkeys(("head", "dd", *table, *parts)))


def restore_consumer(layout: Layout, disk: str) -> str:
    """The node-side command that reads the payload on its standard input and writes the disk."""
    d = shlex.quote(disk)
    steps = []
    if layout.label != "none":
        steps += [mark("head"), _copy_exactly(layout.head, d, 0)]
        if layout.label == "gpt":  # the backup table at this disk's own end, the primary pointing at it
            steps.append(f"sfdisk --no-reread --no-tell-kernel --relocate gpt-bak-std {d} >/dev/null 2>&1")
        elif layout.logical:  # logical partitions: their boot records
            lines = " ".join(shlex.quote(line) for line in table_for(layout.table, disk))
            steps.append(f"printf '%s\\n' {lines} | sfdisk --wipe never --wipe-partitions never --no-reread"
                         f" --no-tell-kernel -q {d} >/dev/null")
    for part in layout.partitions:
        if part.method == "none":
            continue
        steps += [mark(str(part.number)), _restore_partition(part, disk)]
    # the write-back of what is cached may take long on a slow disk: said each second, it is progress
    steps += [mark("sync"), f"{{ sync & p=$!; while kill -0 $p 2>/dev/null; do sleep 1; {mark('sync')}; done;"
                            " wait $p; }"]
    return _check_length("{ " + " && ".join(steps) + "; }")


class Steps:
    """Follows the markers and partclone's output of a save or a restore: which step runs, how far the
    whole has got (each step weighted by ``weights``), the bytes each file system uses, the failure."""

    def __init__(self, layout: Layout, weights: dict[str, int]) -> None:
        self.layout = layout
        self.weights = weights
        self.total = max(1, sum(weights.values()))
        self.done = 0  # weight of the steps finished
        self.current: str | None = None
        self.fraction = 0.0
        self.used: dict[int, int] = {}
        self.block_size: int | None = None
        self.in_use: int | None = None
        self.failure: str | None = None
        self.last = ""  # the last line that was not progress: the reason of a failure that follows

    def where(self) -> str:
        """The step running, for messages: ``partition 2 (ext4, /dev/sda2)`` or ``the partition table``."""
        if self.current is None:
            return "before the partition table"
        if self.current == "head":
            return "the partition table and boot area"
        if self.current == "sync":
            return "the disk's write-back (sync)"
        number = int(self.current)
        part = next((p for p in self.layout.partitions if p.number == number), None)
        return part.describe() if part else f"partition {number}"

    def _used_known(self) -> None:
        if self.current not in (None, "head") and self.block_size and self.in_use is not None:
            self.used[int(self.current)] = self.block_size * self.in_use

    def feed(self, line: str) -> float | None:
        """Digest one line; the whole's percent when it moved."""
        found = MARK_RE.search(line)  # anywhere: zstd's progress, ended by \r alone, may precede it
        if found:
            if self.current is not None:
                self.done += self.weights.get(self.current, 0)
            self.current, self.fraction, self.block_size, self.in_use = found.group(1), 0.0, None, None
            return self.percent()
        if (found := COMPLETED_RE.search(line)) and self.current is not None:
            self.fraction = min(1.0, float(found.group(1)) / 100)
            return self.percent()
        if found := IN_USE_RE.search(line):
            self.in_use = int(found.group(1))
            self._used_known()
        elif found := BLOCK_SIZE_RE.search(line):
            self.block_size = int(found.group(1))
            self._used_known()
        elif FAILURE_RE.search(line) and self.failure is None:
            said = line.strip()
            if PARTCLONE_FAILED_RE.search(said):  # "please check <its log>": what it said before is the reason
                said = f"partclone failed{': ' + self.last if self.last else ''}"
            self.failure = f"{said} ({self.where()})"
        elif line.strip() and not line.startswith(("Elapsed:", "current block:", "Partclone v")):
            self.last = line.strip()
        return None

    def percent(self) -> float:
        """How far the whole has got, 0..100."""
        running = self.weights.get(self.current, 0) * self.fraction if self.current else 0
        return min(100.0, 100.0 * (self.done + running) / self.total)


def save_weights(layout: Layout) -> dict[str, int]:
    """A save's steps weighted by the size of what they read (used bytes are not known before)."""
    weights = {"head": layout.head}
    weights.update({str(p.number): p.size for p in layout.partitions if p.saved})
    return weights


def restore_weights(layout: Layout) -> dict[str, int]:
    """A restore's steps weighted by the bytes they write."""
    weights = {"head": layout.head}
    weights.update({str(p.number): p.used if p.used is not None else p.size for p in layout.partitions if p.saved})
    return weights


class SaveParser(ProgressParser):
    """A file-system-aware save's output: which partition is being read, how far, and how many bytes of
    data each file system holds (partclone's ``Space in use``)."""

    def __init__(self, layout: Layout) -> None:
        super().__init__()
        self.steps: Steps = Steps(layout, save_weights(layout))

    def feed(self, line: str) -> Progress | None:
        """Digest one line of the save pipeline."""
        percent = self.steps.feed(line)
        if self.steps.failure and self.failure is None:
            self.failure = self.steps.failure
        if percent is None:
            return None
        self.work += 1
        return Progress(percent, f"reading {self.steps.where()}")
