"""The image repository: names, listing with aliases, resolution."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imaging.errors import ImageError
from imaging.images import SAVE_RE, Repository, save_name, split_extension, validate_name
from tests.helpers import make_image

Repo = tuple[Repository, Path, Path]
DAY = 86400.0
T0 = 1_700_000_000.0


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """A repository folder and a user's folder with images, saves and aliases."""
    shared = tmp_path / "shared"
    mine = tmp_path / "mine"
    shared.mkdir()
    mine.mkdir()
    make_image(shared, "ubuntu-24.ndz", 4096, T0)
    make_image(shared, "fedora-40.img.zst", 2048, T0 + DAY)
    make_image(shared, "raw.img", 8192, T0 + 2 * DAY)
    (shared / "default.ndz").symlink_to("ubuntu-24.ndz")
    (shared / "u24.ndz").symlink_to("ubuntu-24.ndz")
    (shared / "dangling.ndz").symlink_to("nothing.ndz")
    (shared / "notes.txt").write_text("not an image")
    make_image(mine, "saving__fit03__2026-01-02@10-00__exp.ndz", 100, T0 + 3 * DAY)
    make_image(mine, "saving__fit04__2026-01-05@10-00__exp.ndz", 100, T0 + 5 * DAY)
    make_image(mine, "saving__fit05__2026-01-04@10-00__exp.img.zst", 100, T0 + 4 * DAY)
    return Repository([mine, shared]), shared, mine


def test_listing_shows_each_image_once_with_aliases(repo: Repo) -> None:
    repository, _, _ = repo
    images = repository.images()
    names = [i.name for i in images]
    assert names == ["ubuntu-24.ndz", "fedora-40.img.zst", "raw.img",
                     "saving__fit03__2026-01-02@10-00__exp.ndz",
                     "saving__fit05__2026-01-04@10-00__exp.img.zst",
                     "saving__fit04__2026-01-05@10-00__exp.ndz"]
    ubuntu = images[0]
    assert sorted(a.name for a in ubuntu.aliases) == ["default.ndz", "u24.ndz"]
    assert ubuntu.transport == "frisbee" and images[1].transport == "udpcast"
    assert images[1].ext == ".img.zst" and images[1].stem == "fedora-40"
    info = images[3].save_info
    assert info is not None and info["host"] == "fit03" and images[3].radical == "exp"


def test_same_folder_twice_is_listed_once(repo: Repo) -> None:
    _, shared, _ = repo
    assert len(Repository([shared, shared / "." ]).images()) == 3


@pytest.mark.parametrize(("name", "expected"), [
    ("ubuntu-24.ndz", "ubuntu-24.ndz"),
    ("ubuntu-24", "ubuntu-24.ndz"),
    ("default", "ubuntu-24.ndz"),
    ("u24.ndz", "ubuntu-24.ndz"),
    ("fedora-40", "fedora-40.img.zst"),
    ("raw", "raw.img"),
    ("saving__fit03__2026-01-02@10-00__exp", "saving__fit03__2026-01-02@10-00__exp.ndz"),
])
def test_resolve_by_name_alias_or_stem(repo: Repo, name: str, expected: str) -> None:
    repository, _, _ = repo
    assert repository.resolve(name).image.name == expected


def test_resolve_radical_newest_wins_and_others_are_told(repo: Repo) -> None:
    repository, _, _ = repo
    found = repository.resolve("exp", transport="frisbee")
    assert found.image.name == "saving__fit04__2026-01-05@10-00__exp.ndz"
    assert [o.name for o in found.others] == ["saving__fit03__2026-01-02@10-00__exp.ndz"]
    assert repository.resolve("exp").image.name == "saving__fit04__2026-01-05@10-00__exp.ndz"
    assert repository.resolve("exp", transport="udpcast").image.name.endswith("exp.img.zst")


def test_resolve_path(repo: Repo, tmp_path: Path) -> None:
    repository, shared, _ = repo
    assert repository.resolve(str(shared / "u24.ndz")).image.name == "ubuntu-24.ndz"
    with pytest.raises(ImageError, match="not an image file"):
        repository.resolve(str(shared / "notes.txt"))
    with pytest.raises(ImageError, match="No such file"):
        repository.resolve(str(tmp_path / "nothing.ndz"))


def test_resolve_errors(repo: Repo, tmp_path: Path) -> None:
    repository, shared, _ = repo
    with pytest.raises(ImageError, match="no image 'centos'"):
        repository.resolve("centos")
    with pytest.raises(ImageError, match=r"ubuntu-24\.ndz is a frisbee image; the udpcast transport"
                                         r" loads \.ptcl\.zst/\.img\.zst/\.img images"):
        repository.resolve("ubuntu-24", transport="udpcast")
    make_image(shared, "ubuntu-24.img.zst")
    with pytest.raises(ImageError, match="ambiguous"):
        repository.resolve("ubuntu-24")
    assert repository.resolve("ubuntu-24", transport="udpcast").image.ext == ".img.zst"


@pytest.mark.parametrize("name", ["", "a/b", "..", "x..y", "-rf", ".hidden", "a b", "tab\there",
                                  "nl\n", "bell\x07", "x" * 201])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ImageError, match="image name"):
        validate_name(name)


@given(st.text(max_size=40))
def test_validation_is_total(name: str) -> None:
    try:
        assert validate_name(name) == name
    except ImageError as exc:
        assert "\n" not in str(exc)
    else:
        assert "/" not in name and ".." not in name and not name.startswith("-")
        assert name.isprintable()


@given(st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True).filter(lambda s: ".." not in s),
       st.sampled_from([".ndz", ".img", ".img.zst"]))
def test_save_names_round_trip(radical: str, ext: str) -> None:
    name = save_name("fit07", datetime(2026, 11, 25, 9, 5), radical, ext)
    assert name.startswith("saving__fit07__2026-11-25@09-05__")
    split = split_extension(name)
    assert split is not None and split[1] == ext
    info = SAVE_RE.match(split[0])
    assert info is not None and info["host"] == "fit07" and info["radical"] == radical


def test_checksum_sidecar(repo: Repo) -> None:
    repository, shared, _ = repo
    (shared / "raw.img.sha256").write_text("a" * 64 + "  raw.img\n")
    (shared / "fedora-40.img.zst.sha256").write_text("garbage\n")
    by_name = {i.name: i for i in repository.images()}
    assert by_name["raw.img"].checksum() == "a" * 64
    assert by_name["fedora-40.img.zst"].checksum() is None
    assert by_name["ubuntu-24.ndz"].checksum() is None


def test_unreadable_folder_is_skipped(tmp_path: Path) -> None:
    assert Repository([tmp_path / "missing"]).images() == []


@pytest.mark.parametrize("transport", [None, "udpcast", "frisbee"])
def test_item4_an_empty_name_is_refused(repo: Repo, transport: str | None) -> None:
    repository, _, _ = repo
    with pytest.raises(ImageError, match=r"\Aimage name '' is empty; use letters"):
        repository.resolve("", transport)


def test_item4_an_empty_image_resolves_but_fails_its_check(repo: Repo) -> None:
    repository, shared, _ = repo
    (shared / "blank.img.zst").write_bytes(b"")
    image = repository.resolve("blank").image
    assert image.status() == "broken: empty file"
    with pytest.raises(ImageError, match=r"blank\.img\.zst is empty \(0 bytes\): loading it would leave the nodes"
                                         " with no OS"):
        image.check_content()
    assert repository.resolve("raw").image.status() == "ok"


def test_an_image_the_user_cannot_read_is_broken_for_them(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    repository, _, _ = repo
    image = repository.resolve("raw").image
    asked: list[tuple[Path, int]] = []

    def access(path: Path, mode: int) -> bool:
        asked.append((path, mode))
        return False

    monkeypatch.setattr("imaging.images.os.access", access)
    assert image.status() == "broken: not readable by you"
    assert asked == [(image.path, os.R_OK)]


@pytest.fixture
def cluttered(tmp_path: Path) -> Path:
    """A folder with one image and every kind of entry named like an image that is not one."""
    folder = tmp_path / "clutter"
    folder.mkdir()
    make_image(folder, "good.img", 4096, T0)
    (folder / "folder.img").mkdir()
    (folder / "gone.ndz").symlink_to("nothing.ndz")
    (folder / "loop-a.img.zst").symlink_to("loop-b.img.zst")
    (folder / "loop-b.img.zst").symlink_to("loop-a.img.zst")
    (folder / "self.img").symlink_to("self.img")
    (folder / "to-folder.img").symlink_to("folder.img")
    (folder / "notes.txt").write_text("text")
    (folder / "to-notes.ndz").symlink_to("notes.txt")
    os.mkfifo(folder / "pipe.img")
    (folder / "to-pipe.img").symlink_to("pipe.img")
    (folder / "alias.img").symlink_to("good.img")
    return folder


def test_item5_scan_tells_why_each_broken_entry_is_broken(cluttered: Path) -> None:
    scan = Repository([cluttered]).scan()
    assert [(i.name, [a.name for a in i.aliases]) for i in scan.images] == [("good.img", ["alias.img"])]
    assert {b.name: b.status() for b in scan.broken} == {
        "folder.img": "broken: a directory",
        "gone.ndz": "broken: dangling link to nothing.ndz",
        "loop-a.img.zst": "broken: symlink loop",
        "loop-b.img.zst": "broken: symlink loop",
        "self.img": "broken: symlink loop",
        "to-folder.img": "broken: link to folder.img, a directory",
        "to-notes.ndz": "broken: link to notes.txt, not named like an image (.ptcl.zst, .img.zst, .ndz, .img)",
        "pipe.img": "broken: not a regular file",
        "to-pipe.img": "broken: link to pipe.img, not a regular file",
    }
    gone = next(b for b in scan.broken if b.name == "gone.ndz")
    assert gone.path == cluttered / "gone.ndz" and gone.ext == ".ndz" and gone.transport == "frisbee"
    assert gone.mtime == (cluttered / "gone.ndz").lstat().st_mtime
    assert scan.entries() == [*scan.images, *scan.broken]
    assert Repository([cluttered]).images() == scan.images


@pytest.mark.parametrize(("name", "reason"), [
    ("gone", "dangling link to nothing.ndz"), ("gone.ndz", "dangling link to nothing.ndz"),
    ("loop-a", "symlink loop"), ("folder.img", "a directory"), ("pipe", "not a regular file"),
])
def test_item5_resolving_a_broken_entry_says_why(cluttered: Path, name: str, reason: str) -> None:
    with pytest.raises(ImageError, match=rf"\A{cluttered}/\S+ is broken \({reason}\); repair or remove it,"
                                         r" or name another image\Z"):
        Repository([cluttered]).resolve(name)
    assert Repository([cluttered]).resolve("alias").image.name == "good.img"


def test_item5_a_broken_name_does_not_hide_an_image(cluttered: Path) -> None:
    make_image(cluttered, "gone.img", 10)  # the name "gone" finds this image, not the dangling gone.ndz
    assert Repository([cluttered]).resolve("gone").image.name == "gone.img"
