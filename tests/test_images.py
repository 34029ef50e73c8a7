"""The image repository: names, listing with aliases, resolution."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imaging.errors import ImageError
from imaging.images import SAVE_RE, Repository, save_name, split_extension, validate_name
from tests.helpers import make_image

DAY = 86400.0
T0 = 1_700_000_000.0


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Repository, Path, Path]:
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


def test_listing_shows_each_image_once_with_aliases(repo) -> None:
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
    assert images[3].save_info["host"] == "fit03" and images[3].radical == "exp"


def test_same_folder_twice_is_listed_once(repo) -> None:
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
def test_resolve_by_name_alias_or_stem(repo, name: str, expected: str) -> None:
    repository, _, _ = repo
    assert repository.resolve(name).image.name == expected


def test_resolve_radical_newest_wins_and_others_are_told(repo) -> None:
    repository, _, _ = repo
    found = repository.resolve("exp", transport="frisbee")
    assert found.image.name == "saving__fit04__2026-01-05@10-00__exp.ndz"
    assert [o.name for o in found.others] == ["saving__fit03__2026-01-02@10-00__exp.ndz"]
    assert repository.resolve("exp").image.name == "saving__fit04__2026-01-05@10-00__exp.ndz"
    assert repository.resolve("exp", transport="udpcast").image.name.endswith("exp.img.zst")


def test_resolve_path(repo, tmp_path: Path) -> None:
    repository, shared, _ = repo
    assert repository.resolve(str(shared / "u24.ndz")).image.name == "ubuntu-24.ndz"
    with pytest.raises(ImageError, match="not an image file"):
        repository.resolve(str(shared / "notes.txt"))
    with pytest.raises(ImageError, match="No such file"):
        repository.resolve(str(tmp_path / "nothing.ndz"))


def test_resolve_errors(repo, tmp_path: Path) -> None:
    repository, shared, _ = repo
    with pytest.raises(ImageError, match="no image 'centos'"):
        repository.resolve("centos")
    with pytest.raises(ImageError, match=r"ubuntu-24\.ndz is a frisbee image; the udpcast transport"
                                         r" loads \.img\.zst/\.img images"):
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
    stem, found_ext = split_extension(name)
    assert found_ext == ext
    info = SAVE_RE.match(stem)
    assert info["host"] == "fit07" and info["radical"] == radical


def test_checksum_sidecar(repo) -> None:
    repository, shared, _ = repo
    (shared / "raw.img.sha256").write_text("a" * 64 + "  raw.img\n")
    (shared / "fedora-40.img.zst.sha256").write_text("garbage\n")
    by_name = {i.name: i for i in repository.images()}
    assert by_name["raw.img"].checksum() == "a" * 64
    assert by_name["fedora-40.img.zst"].checksum() is None
    assert by_name["ubuntu-24.ndz"].checksum() is None


def test_unreadable_folder_is_skipped(tmp_path: Path) -> None:
    assert Repository([tmp_path / "missing"]).images() == []
