"""`imaging-main share FILE [--alias NAME]`: move a user's save into the repository."""

from __future__ import annotations

import argparse

from .common import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `share`."""
    parser.add_argument("file", metavar="FILE", help="a save (path, file name or radical)")
    parser.add_argument("--alias", metavar="NAME", help="also make NAME.<ext> a link to it in the repository")
    parser.add_argument("--force", action="store_true", help="replace an image or alias of the same name")
    parser.add_argument("--dry-run", action="store_true",
                        help="only say what would be done (the default for users who cannot write the repository)")


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Move the save as ``<radical>.<ext>`` with its sidecar; print each step."""
    import os

    from ..errors import UsageError
    from ..images import carry_out, share_plan

    repository = ctx.config.get_path("images", "images_dir")
    image = ctx.repository.resolve(args.file).image
    if image.path.parent.resolve() == repository.resolve():
        raise UsageError(f"{image.name} is already in the repository {repository}")
    steps = share_plan(image, repository, args.alias, args.force)
    writable = repository.is_dir() and os.access(repository, os.W_OK)
    dry = args.dry_run or not writable
    for action, source, target in steps:
        print(f"{'would ' if dry else ''}{action} {source} -> {target}")
    if dry:
        if not args.dry_run:
            print(f"(dry run: you cannot write into {repository}; ask its owner to run this command)")
        return 0
    carry_out(steps)
    return 0
