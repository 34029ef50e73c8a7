"""`imaging-main config`: the effective value of every key and where it comes from."""

from __future__ import annotations

import argparse
import re

from .common import Context

SECRET_RE = re.compile(r"token|password|secret", re.IGNORECASE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `config`."""
    parser.add_argument("--sample", action="store_true",
                        help="print imaging.conf.sample: every key, commented, with its default")


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print the settings grouped by section, each with its origin."""
    from ..config import sample_text
    if args.sample:
        print(sample_text(), end="")
        return 0
    config = ctx.config
    print(f"# files read: {', '.join(config.files) or 'none (defaults only)'}")
    section = None
    for setting in config.settings():
        if setting.section != section:
            section = setting.section
            print(f"\n[{section}]")
        value = "<redacted>" if SECRET_RE.search(setting.name) else setting.value
        print(f"{setting.name} = {value}    # {setting.origin}")
    return 0
