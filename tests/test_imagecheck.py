"""Image content checks (issue items 4 and 5): real zstd output, frisbee chunk headers, raw images.

The zstd files are made by the ``zstd`` program; ``zstd -t`` (which decompresses
everything) is the oracle that a file the walk calls truncated really is.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
from pathlib import Path

import pytest

from imaging import imagecheck
from imaging.errors import ImageError
from imaging.imagecheck import NDZ_CHUNK, check_ndz, check_raw, check_zstd
from imaging.images import image_from_path
from tests.helpers import ndz_chunk

MIB = 1024 * 1024


def zstd(source: Path, target: Path, *options: str, stdin: bool = False) -> Path:
    """``target``: ``source`` compressed by the zstd program (from a pipe with ``stdin``:
    no content size in the frame header)."""
    if stdin:
        with open(source, "rb") as data, open(target, "wb") as out:
            subprocess.run(["zstd", "-q", "-c", *options], stdin=data, stdout=out, check=True)
    else:
        subprocess.run(["zstd", "-q", "-f", *options, str(source), "-o", str(target)], check=True)
    return target


def zstd_accepts(path: Path) -> bool:
    """What zstd itself says after decompressing everything."""
    return subprocess.run(["zstd", "-t", "-q", str(path)], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 MiB of a disk: random bytes (raw blocks), text (compressed blocks), zeros (RLE blocks)."""
    path = tmp_path_factory.mktemp("disk") / "disk.raw"
    path.write_bytes(os.urandom(MIB) + b"a line of a text file\n" * (MIB // 22) + bytes(MIB))
    return path


@pytest.fixture(scope="module")
def image(disk: Path) -> Path:
    """``disk`` as zstd compresses a file: one frame declaring its content size."""
    return zstd(disk, disk.with_name("image.img.zst"))


def test_item5_complete_zstd_images_pass_with_their_content_size(disk: Path, image: Path, tmp_path: Path) -> None:
    size = disk.stat().st_size
    assert check_zstd(image) == imagecheck.Content("zstd", image.stat().st_size, size, 1)
    assert check_zstd(zstd(disk, tmp_path / "nocheck.img.zst", "--no-check")).size == size
    assert check_zstd(zstd(disk, tmp_path / "long.img.zst", "-19", "--long=27")).size == size
    streamed = zstd(disk, tmp_path / "streamed.img.zst", stdin=True)  # as a save writes it
    assert check_zstd(streamed) == imagecheck.Content("zstd", streamed.stat().st_size, None, 1)
    two = tmp_path / "two.img.zst"
    two.write_bytes(image.read_bytes() * 2)
    assert check_zstd(two).size == 2 * size and check_zstd(two).pieces == 2
    mixed = tmp_path / "mixed.img.zst"  # one frame without a content size: the total is unknown
    mixed.write_bytes(image.read_bytes() + streamed.read_bytes())
    assert check_zstd(mixed).size is None and check_zstd(mixed).pieces == 2


def test_item5_skippable_frames_are_stepped_over(image: Path, tmp_path: Path) -> None:
    skip = struct.pack("<II", 0x184D2A5A, 5) + b"notes"
    wrapped = tmp_path / "wrapped.img.zst"
    wrapped.write_bytes(skip + image.read_bytes() + skip)
    assert zstd_accepts(wrapped)
    assert check_zstd(wrapped).pieces == 1
    wrapped.write_bytes(image.read_bytes() + skip[:-1])
    with pytest.raises(ImageError, match=r"is truncated: it ends inside a zstd frame at byte \d+"):
        check_zstd(wrapped)
    wrapped.write_bytes(skip)
    with pytest.raises(ImageError, match="holds no zstd frame"):
        check_zstd(wrapped)


def test_item5_every_truncation_is_found_as_zstd_finds_it(image: Path, tmp_path: Path) -> None:
    data = image.read_bytes()
    cut = tmp_path / "cut.img.zst"
    ends = sorted({*range(1, 40), *range(len(data) - 40, len(data)), *range(0, len(data), 9973)} - {0})
    for end in ends:
        cut.write_bytes(data[:end])
        with pytest.raises(ImageError) as refused:
            check_zstd(cut)
        assert not zstd_accepts(cut)
        if end >= 4:  # with its magic the file is a zstd file that stops early
            assert str(refused.value) == (f"{cut} is truncated: it ends inside a zstd frame at byte {end}"
                                          " (the frame starts at byte 0); save it again or check the copy")


def test_item5_truncated_second_frame_names_where_it_starts(image: Path, tmp_path: Path) -> None:
    data = image.read_bytes()
    cut = tmp_path / "cut.img.zst"
    cut.write_bytes(data + data[: len(data) // 2])
    with pytest.raises(ImageError, match=rf"ends inside a zstd frame at byte {len(data) + len(data) // 2}"
                                         rf" \(the frame starts at byte {len(data)}\)"):
        check_zstd(cut)


def test_item5_data_after_the_frames_is_corrupt(image: Path, tmp_path: Path) -> None:
    bad = tmp_path / "tail.img.zst"
    bad.write_bytes(image.read_bytes() + bytes(512))
    assert not zstd_accepts(bad)
    with pytest.raises(ImageError, match=rf"is corrupt: the data at byte {image.stat().st_size} is not a zstd"
                                         r" frame \(it starts with 00 00"):
        check_zstd(bad)


def _first_block(data: bytes | bytearray) -> int:
    """Offset of the first block header of a frame zstd wrote from a file (4-byte content size)."""
    descriptor = data[4]
    assert descriptor & 0x03 == 0  # no dictionary
    return 4 + 1 + (0 if descriptor & 0x20 else 1) + (1 if descriptor & 0x20 else 0, 2, 4, 8)[descriptor >> 6]


def test_item5_corrupt_headers(image: Path, tmp_path: Path) -> None:
    data = bytearray(image.read_bytes())
    block = _first_block(data)
    bad = tmp_path / "bad.img.zst"
    reserved = bytearray(data)
    reserved[block] |= 0b110  # block type 3 is reserved
    bad.write_bytes(reserved)
    assert not zstd_accepts(bad)
    with pytest.raises(ImageError, match=rf"is corrupt: the zstd frame at byte 0 has a reserved block type"
                                         rf" at byte {block}; save it again"):
        check_zstd(bad)
    huge = bytearray(data)
    value = int.from_bytes(huge[block:block + 3], "little") | (0x1FFFFF << 3)  # the largest size field
    huge[block:block + 3] = value.to_bytes(3, "little")
    bad.write_bytes(huge)
    with pytest.raises(ImageError, match=r"has a block of 2097151 bytes \(at most 131072\)"):
        check_zstd(bad)
    flag = bytearray(data)
    flag[4] |= 0x08
    bad.write_bytes(flag)
    with pytest.raises(ImageError, match="the zstd frame at byte 0 sets a reserved bit"):
        check_zstd(bad)


@pytest.mark.parametrize("size", [1, 255, 256, 1000, 65791, 65792, 300_000])  # 1, 2 and 4-byte size fields
def test_item5_content_size_from_the_frame_header(tmp_path: Path, size: int) -> None:
    source = tmp_path / "random"
    source.write_bytes(os.urandom(size))
    assert check_zstd(zstd(source, tmp_path / "r.img.zst")).size == size


def test_item5_content_size_must_fit_the_blocks(tmp_path: Path) -> None:
    source = tmp_path / "random"
    source.write_bytes(os.urandom(300_000))  # incompressible: raw blocks, whose sizes are exact
    data = bytearray(zstd(source, tmp_path / "r.img.zst").read_bytes())
    descriptor = data[4]
    assert descriptor >> 6 == 2 and descriptor & 0x03 == 0  # a 4-byte content size, no dictionary
    at = 5 if descriptor & 0x20 else 6  # after the window byte, unless the frame is a single segment
    data[at:at + 4] = (300_001).to_bytes(4, "little")
    lying = tmp_path / "lying.img.zst"
    lying.write_bytes(data)
    assert not zstd_accepts(lying)
    with pytest.raises(ImageError, match="declares 300001 bytes of content, but its blocks hold 300000 to 300000"):
        check_zstd(lying)


def test_item4_empty_images_are_refused(tmp_path: Path) -> None:
    nothing = tmp_path / "nothing"
    nothing.write_bytes(b"")
    for check, name in ((check_zstd, "e.img.zst"), (check_ndz, "e.ndz"), (check_raw, "e.img")):
        empty = tmp_path / name
        empty.write_bytes(b"")
        with pytest.raises(ImageError, match=rf"\A{empty} is empty \(0 bytes\): loading it would leave the nodes"
                                             r" with no OS; save the image again or choose another\Z"):
            check(empty)
    for stdin in (False, True):
        compressed = zstd(nothing, tmp_path / f"empty-{stdin}.img.zst", stdin=stdin)
        assert zstd_accepts(compressed)
        with pytest.raises(ImageError, match=r"holds an empty disk: its zstd frames decompress to 0 bytes"):
            check_zstd(compressed)


def test_item5_other_files_named_img_zst(disk: Path, image: Path, tmp_path: Path) -> None:
    cases = {
        b"a text file\n": r"is not a zstd file \(it starts with 61 20 74 65 78 74 20 66\)",
        gzip.compress(b"x" * 1000): r"is not a zstd file \(it is a gzip file\)",
        bytes(510) + b"\x55\xaa": r"is not a zstd file \(it is a raw disk with a boot sector: name it \.img\)",
        b"\x28\xb5": r"is not a zstd file \(it starts with 28 b5\)",
    }
    other = tmp_path / "other.img.zst"
    for content, message in cases.items():
        other.write_bytes(content)
        with pytest.raises(ImageError, match=message + r"; a \.img\.zst image is made by zstd"):
            check_zstd(other)


def test_item5_raw_images(image: Path, disk: Path, tmp_path: Path) -> None:
    assert check_raw(disk) == imagecheck.Content("raw", disk.stat().st_size, disk.stat().st_size, 1)
    renamed = tmp_path / "renamed.img"
    renamed.write_bytes(image.read_bytes())
    with pytest.raises(ImageError, match=r"renamed\.img is a zstd file, not a raw disk .*; name it \.img\.zst"):
        check_raw(renamed)
    renamed.write_bytes(gzip.compress(b"disk"))
    with pytest.raises(ImageError, match=r"is a gzip file, not a raw disk .*; decompress it\Z"):
        check_raw(renamed)


def test_item5_ndz_chunks(tmp_path: Path) -> None:
    path = tmp_path / "i.ndz"
    chunks = [ndz_chunk(0, 0, 2037), ndz_chunk(1, 2037, 4074), ndz_chunk(2, 4074, 10240)]
    path.write_bytes(b"".join(chunks))
    assert check_ndz(path) == imagecheck.Content("ndz", 3 * NDZ_CHUNK, 10240 * 512, 3)
    path.write_bytes(b"".join(chunks)[:-1])
    with pytest.raises(ImageError, match=rf"i\.ndz is truncated: it ends inside chunk 2 at byte {3 * NDZ_CHUNK - 1}"
                                         r" \(frisbee chunks are 1048576 bytes\); save it again or check the copy"):
        check_ndz(path)
    path.write_bytes(chunks[0] + chunks[2] + chunks[1])
    with pytest.raises(ImageError, match=rf"is corrupt: chunk 1 at byte {NDZ_CHUNK} says it is chunk 2"):
        check_ndz(path)
    path.write_bytes(chunks[0] + bytes(NDZ_CHUNK))
    with pytest.raises(ImageError, match=r"chunk 1 at byte 1048576 has no imagezip header \(magic 0x0,"
                                         r" not 0x6969696b\)"):
        check_ndz(path)
    path.write_bytes(ndz_chunk(0, 0, 8, data=NDZ_CHUNK))
    with pytest.raises(ImageError, match=r"chunk 0 at byte 0 declares 1048576 bytes of data and 4096 of regions"):
        check_ndz(path)
    path.write_bytes(ndz_chunk(0, 0, 8, magic=0x69696969) + ndz_chunk(7, 8, 16, magic=0x69696969))
    assert check_ndz(path).size is None  # version 1: no sector fields, no chunk order


def test_item5_other_files_named_ndz(image: Path, disk: Path, tmp_path: Path) -> None:
    other = tmp_path / "x.ndz"
    other.write_bytes(image.read_bytes())
    with pytest.raises(ImageError, match=r"is not a frisbee image \(it is a zstd file: name it \.img\.zst\);"
                                         r" a \.ndz image is made by imagezip"):
        check_ndz(other)
    other.write_bytes(ndz_chunk(0, 0, 8, magic=0x6969696D))  # a version this product does not know
    with pytest.raises(ImageError, match=r"is not a frisbee image \(it starts with 6d 69 69 69"):
        check_ndz(other)


def test_unreadable_and_special_files(tmp_path: Path) -> None:
    fifo = tmp_path / "f.img.zst"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=r"f\.img\.zst is not a regular file"):
        check_zstd(fifo)  # and does not block on the FIFO
    with pytest.raises(ImageError, match=r"cannot read .*missing\.img: No such file"):
        check_raw(tmp_path / "missing.img")


def test_item5_the_walk_seeks_over_the_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "random"
    source.write_bytes(os.urandom(16 * MIB))
    image = zstd(source, tmp_path / "big.img.zst", "--fast")
    read: list[int] = []
    real = os.pread

    def counting(fd: int, count: int, offset: int) -> bytes:
        data = real(fd, count, offset)
        read.append(len(data))
        return data

    monkeypatch.setattr("imaging.imagecheck.os.pread", counting)
    assert check_zstd(image).size == 16 * MIB
    assert len(read) >= 128  # one read per 128 KiB block at least...
    assert sum(read) < image.stat().st_size // 20  # ...of one page each, not the data


def test_item5_image_check_content_follows_the_extension(image: Path, tmp_path: Path) -> None:
    named = tmp_path / "x.img"
    named.write_bytes(image.read_bytes())
    with pytest.raises(ImageError, match="not a raw disk"):
        image_from_path(named).check_content()
    assert image_from_path(image).check_content().format == "zstd"
