"""The image repository: listing, naming and resolving images.

Images live in the repository folder (``[images] images_dir``) and, for a
user's own saves, in the current directory.  A file is an image when its name
ends in one of :data:`EXTENSIONS`; a symlink to an image is an alias of it.
An entry named like an image that no load can use (a directory, a dangling
link, a symlink loop) is :class:`Broken`: listed, never resolved.
Saves are named ``saving__<host>__<YYYY-MM-DD@HH-MM>__<radical>.<ext>``.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import disklayout, imagecheck, registry
from .errors import ImageError

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    """One kind of image file: the transport that loads it and the check of its content."""

    transport: str
    check: Callable[[Path], imagecheck.Content]


# extension -> its format, from the transports' lines in the registry; longest first so .img.zst beats .img
FORMATS: dict[str, Format] = dict(sorted(
    ((ext, Format(backend.name, registry.resolve(check))) for backend in registry.TRANSPORTS
     for ext, check in backend.formats.items()), key=lambda item: -len(item[0])))
EXTENSIONS: dict[str, str] = {ext: kind.transport for ext, kind in FORMATS.items()}  # extension -> transport
SAVE_RE = re.compile(r"\Asaving__(?P<host>[^_/]+)__(?P<date>\d{4}-\d\d-\d\d@\d\d-\d\d)__(?P<radical>.+)\Z")
DATE_FORMAT = "%Y-%m-%d@%H-%M"
MAX_NAME = 200


def split_extension(filename: str) -> tuple[str, str] | None:
    """``(stem, ext)`` when the file name has an image extension, else None."""
    for ext in EXTENSIONS:
        if filename.endswith(ext) and len(filename) > len(ext):
            return filename[: -len(ext)], ext
    return None


def validate_name(name: str) -> str:
    """Check an image name given by a user; return it or raise ImageError."""
    problem = None
    if not name:
        problem = "is empty"
    elif len(name) > MAX_NAME:
        problem = f"is longer than {MAX_NAME} characters"
    elif "/" in name or "\\" in name:
        problem = "contains a slash"
    elif ".." in name:
        problem = "contains '..'"
    elif name.startswith(("-", ".")):
        problem = f"starts with {name[0]!r}"
    elif not name.isprintable() or any(c.isspace() for c in name):
        problem = "contains a space or a control character"
    if problem:
        raise ImageError(f"image name {name!r} {problem}; use letters, digits, '.', '-', '_'")
    return name


def save_name(host: str, when: datetime, radical: str, ext: str) -> str:
    """The file name of a save: ``saving__<host>__<date>__<radical><ext>``."""
    validate_name(radical)
    if ext not in EXTENSIONS:
        raise ImageError(f"unknown image extension {ext!r}")
    return f"saving__{host}__{when.strftime(DATE_FORMAT)}__{radical}{ext}"


class NamedLikeImage:
    """What an entry's name tells, for images and broken entries alike (``path`` and ``ext`` given)."""

    path: Path
    ext: str

    @property
    def name(self) -> str:
        """The file name."""
        return self.path.name

    @property
    def stem(self) -> str:
        """The file name without its image extension."""
        return self.name[: -len(self.ext)]

    @property
    def transport(self) -> str:
        """The transport its extension names: frisbee or udpcast."""
        return EXTENSIONS[self.ext]

    @property
    def save_info(self) -> re.Match[str] | None:
        """The parts of a save's name (host, date, radical), or None."""
        return SAVE_RE.match(self.stem)


@dataclass
class Image(NamedLikeImage):
    """One image file and what is known of it."""

    path: Path  # the real file, symlinks resolved
    ext: str
    size: int
    mtime: float
    aliases: list[Path] = field(default_factory=list)

    @property
    def radical(self) -> str:
        """What a save was named by its user; the stem for other images."""
        info = self.save_info
        return info["radical"] if info else self.stem

    @property
    def when(self) -> datetime:
        """Modification time."""
        return datetime.fromtimestamp(self.mtime)

    def file_names(self) -> list[str]:
        """Its file name and its aliases' names."""
        return [self.name] + [alias.name for alias in self.aliases]

    def stems(self) -> list[str]:
        """Those names without their image extensions."""
        return [(split_extension(name) or (name, ""))[0] for name in self.file_names()]

    def status(self) -> str:
        """``ok``, or ``broken: <why>`` when the listing can tell without reading the file."""
        if self.size == 0:
            return "broken: empty file"
        if not os.access(self.path, os.R_OK):
            return "broken: not readable by you"
        return "ok"

    def check_content(self) -> imagecheck.Content:
        """Read the file's headers as a load would need them: ImageError (one line naming the
        file, the problem and the fix) when it is empty, truncated or not of its format."""
        return FORMATS[self.ext].check(self.path)

    def layout(self) -> disklayout.Layout | None:
        """The disk layout a file-system-aware image records (None for a raw image, or one whose
        layout cannot be read: :meth:`check_content` says why)."""
        if FORMATS[self.ext].check is not disklayout.check_image:
            return None
        try:
            return disklayout.read_layout(self.path)
        except ImageError:
            return None

    def checksum(self) -> str | None:
        """The sha256 recorded in the ``<file>.sha256`` sidecar, if any."""
        sidecar = self.path.with_name(self.name + ".sha256")
        try:
            words = sidecar.read_text(encoding="utf-8").split()
        except OSError:
            return None
        return words[0] if words and re.fullmatch(r"[0-9a-f]{64}", words[0]) else None


@dataclass(frozen=True)
class Broken(NamedLikeImage):
    """An entry named like an image that no load can use, and why."""

    path: Path  # the entry itself, not what it points to
    ext: str
    mtime: float  # of the entry itself
    reason: str  # "dangling link to X", "symlink loop", "a directory", ...

    @property
    def when(self) -> datetime:
        """Modification time of the entry."""
        return datetime.fromtimestamp(self.mtime)

    def status(self) -> str:
        """``broken: <reason>``."""
        return f"broken: {self.reason}"


@dataclass(frozen=True)
class Scan:
    """What the repository folders hold: usable images and broken entries."""

    images: list[Image]
    broken: list[Broken]

    def entries(self) -> list[Image | Broken]:
        """The images, then the broken entries."""
        return [*self.images, *self.broken]


@dataclass(frozen=True)
class Resolution:
    """The image a name resolves to, and the other candidates that lost."""

    image: Image
    others: tuple[Image, ...] = ()


def image_from_path(path: Path) -> Image:
    """The image at a path (symlinks followed); ImageError if not an image."""
    real = Path(os.path.realpath(path))
    split = split_extension(real.name)
    if split is None:
        raise ImageError(f"{path}: not an image file (names end in {', '.join(EXTENSIONS)})")
    try:
        stat = real.stat()
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror}") from None
    if not real.is_file():
        raise ImageError(f"{path}: not a regular file")
    return Image(real, split[1], stat.st_size, stat.st_mtime)


class Repository:
    """The folders that hold images, searched in order."""

    def __init__(self, folders: Sequence[Path]) -> None:
        unique: dict[str, Path] = {}
        for folder in folders:
            unique.setdefault(os.path.realpath(folder), folder)
        self.folders = list(unique.values())

    @classmethod
    def from_config(cls, config: Config) -> Repository:
        """The current directory, then ``[images] images_dir``."""
        return cls([Path("."), config.get_path("images", "images_dir")])

    def images(self) -> list[Image]:
        """Every image once, with its aliases, sorted by date then name."""
        return self.scan().images

    def scan(self) -> Scan:
        """Every image once, with its aliases, sorted by date then name; and every entry
        named like an image that is not one (sorted by name), with the reason."""
        found: dict[str, Image] = {}
        links: list[tuple[Path, str]] = []
        broken: list[Broken] = []
        for folder in self.folders:
            try:
                entries = sorted(folder.iterdir())
            except OSError as exc:
                log.debug("cannot list %s: %s", folder, exc)
                continue
            for entry in entries:
                split = split_extension(entry.name)
                if split is None:
                    continue
                if entry.is_symlink():
                    links.append((entry, split[1]))
                    continue
                try:
                    image = image_from_path(entry)
                except ImageError:
                    broken.append(_broken(entry, split[1]))
                    continue
                found[str(image.path)] = image
        for link, ext in links:
            real = os.path.realpath(link)
            if real not in found:
                try:
                    found[real] = image_from_path(link)
                except ImageError as exc:
                    log.info("alias %s is not usable: %s", link, exc)
                    broken.append(_broken(link, ext))
                    continue
            found[real].aliases.append(link)
        return Scan(sorted(found.values(), key=lambda i: (i.mtime, i.name)),
                    sorted(broken, key=lambda b: (b.name, str(b.path))))

    def resolve(self, name: str, transport: str | None = None) -> Resolution:
        """The image ``-i NAME`` designates.

        ``NAME`` is a path (contains ``/`` or names an existing file), a file
        name or alias in a repository folder, such a name without its
        extension, or the radical of saves (the newest wins).  With
        ``transport``, only images that transport loads are candidates.
        """
        if "/" in name or (os.path.isfile(name) and split_extension(name)):
            return Resolution(self._check_transport(image_from_path(Path(name)), transport))
        validate_name(name)
        scan = self.scan()
        everything = scan.images
        for rule in (self._by_file_name, self._by_stem, self._by_radical):
            matches = rule(everything, name)
            if not matches:
                continue
            usable = [i for i in matches if transport in (None, i.transport)]
            if not usable:
                return Resolution(self._check_transport(matches[0], transport))
            if rule is not self._by_radical and len({i.transport for i in usable}) > 1:
                paths = ", ".join(str(i.path) for i in usable)
                raise ImageError(f"image {name!r} is ambiguous: {paths};"
                                 " give the full file name or --transport")
            usable.sort(key=lambda i: i.mtime, reverse=True)
            return Resolution(usable[0], tuple(usable[1:]))
        for entry in scan.broken:
            if name in (entry.name, entry.stem):
                raise ImageError(f"{entry.path} is broken ({entry.reason}); repair or remove it,"
                                 " or name another image")
        where = ", ".join(str(f) for f in self.folders)
        raise ImageError(f"no image {name!r} in {where}; see imaging-list")

    @staticmethod
    def _check_transport(image: Image, transport: str | None) -> Image:
        if transport not in (None, image.transport):
            raise ImageError(f"{image.name} is a {image.transport} image; the {transport}"
                             f" transport loads {_extensions_of(transport)} images")
        return image

    @staticmethod
    def _by_file_name(images: Iterable[Image], name: str) -> list[Image]:
        return [i for i in images if name in i.file_names()]

    @staticmethod
    def _by_stem(images: Iterable[Image], name: str) -> list[Image]:
        return [i for i in images if name in i.stems()]

    @staticmethod
    def _by_radical(images: Iterable[Image], name: str) -> list[Image]:
        return [i for i in images if i.save_info and i.radical == name]


def _broken(entry: Path, ext: str) -> Broken:
    """An entry named like an image (``ext``) that cannot be loaded, and why."""
    try:
        mtime = entry.lstat().st_mtime
    except OSError:
        mtime = 0.0
    return Broken(entry, ext, mtime, _why_broken(entry))


def _why_broken(entry: Path) -> str:
    try:
        target = f" to {os.readlink(entry)}" if entry.is_symlink() else ""
    except OSError:
        target = ""
    try:
        mode = entry.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        if exc.errno == errno.ENOENT:
            return f"dangling link{target}"
        return f"unreadable{' link' + target if target else ''}: {exc.strerror}"
    if stat.S_ISDIR(mode):
        return f"link{target}, a directory" if target else "a directory"
    if not stat.S_ISREG(mode):
        return f"link{target}, not a regular file" if target else "not a regular file"
    return f"link{target}, not named like an image ({', '.join(EXTENSIONS)})"


def _extensions_of(transport: str | None) -> str:
    return "/".join(ext for ext, kind in EXTENSIONS.items() if kind == transport) or "no"


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(image: Image) -> str:
    """``ok``, ``MISMATCH``, ``no sidecar`` or ``unreadable (…)``: the image against its ``.sha256`` sidecar."""
    recorded = image.checksum()
    if recorded is None:
        return "no sidecar"
    try:
        return "ok" if file_sha256(image.path) == recorded else "MISMATCH"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def share_plan(image: Image, repository: Path, alias: str | None, force: bool) -> list[tuple[str, Path, Path]]:
    """What sharing a save into the repository does: ``(action, source, destination)``
    steps, ``<radical>.<ext>`` with its sidecar, plus an alias link; ImageError when a
    destination exists and ``force`` is not given."""
    destination = repository / f"{image.radical}{image.ext}"
    steps = [("move", image.path, destination)]
    sidecar = image.path.with_name(image.name + ".sha256")
    if sidecar.exists():
        steps.append(("sidecar", sidecar, destination.with_name(destination.name + ".sha256")))
    if alias is not None:
        validate_name(alias)
        steps.append(("link", destination, repository / f"{alias}{image.ext}"))
    for _, source, target in steps:
        if (target.exists() or target.is_symlink()) and not force and target != source:
            raise ImageError(f"{target} exists; pass --force to replace it")
    if not os.access(image.path.parent, os.W_OK):
        raise ImageError(f"cannot move {image.name} out of {image.path.parent} (not writable);"
                         " ask its owner, or copy it yourself")
    return steps


def carry_out(steps: list[tuple[str, Path, Path]]) -> None:
    """Do what :func:`share_plan` planned: a move is a copy to ``.partial`` then a
    rename (atomic at the destination, even across file systems), then the source removed."""
    for action, source, target in steps:
        if action == "link":
            temporary = target.with_name(f".{target.name}.{os.getpid()}")
            try:
                temporary.unlink(missing_ok=True)
                temporary.symlink_to(source.name)
                os.replace(temporary, target)
            except OSError as exc:
                raise ImageError(f"cannot make the alias {target}: {exc.strerror}") from None
            continue
        partial = target.with_name(target.name + ".partial")
        try:
            if action == "sidecar":  # the same checksum, naming the file's new name
                digest = source.read_text(encoding="utf-8").split()[0]
                partial.write_text(f"{digest}  {target.name.removesuffix('.sha256')}\n", encoding="utf-8")
            else:
                shutil.copyfile(source, partial)
            os.chmod(partial, 0o644)  # readable by every user of the server
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ImageError(f"cannot write {target}: {exc.strerror}") from None
        try:
            source.unlink()
        except OSError as exc:
            raise ImageError(f"{target} is in place but {source} could not be removed ({exc.strerror});"
                             " remove it yourself") from None
