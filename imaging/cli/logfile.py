"""The log file: everything goes to ``imaging.log`` (config ``[logging] file``);
the terminal gets only the display and one-line errors."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex

from ..config import Config

log = logging.getLogger("imaging")
ASYNCIO = logging.getLogger("asyncio")  # its complaints (a child reaped late, a closed loop) go to the log too
# Python's warnings (a library's deprecation notices, asyncssh's about DSA keys) go to the log, not the terminal
PY_WARNINGS = logging.getLogger("py.warnings")
LOGGERS = (log, ASYNCIO, PY_WARNINGS)
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def silence() -> None:
    """Send the ``imaging`` loggers nowhere until :func:`setup_logging` opens the file: without a handler
    of their own, logging's last resort would print every record, tracebacks included, on the terminal
    beside the one-line error.  Python's warnings are routed to logging from here on."""
    logging.captureWarnings(True)
    for logger in LOGGERS:
        logger.propagate = False
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())


def setup_logging(config: Config, argv: list[str]) -> str | None:
    """Send the ``imaging`` loggers to the configured file; return a warning
    to show the user when the file cannot be opened (the command goes on)."""
    path = config.get_path("logging", "file")
    level_name = config.get_str("logging", "level").upper()
    level = logging.getLevelNamesMapping().get(level_name)
    warning = None
    if level is None:
        warning = f"[logging] level = {level_name!r} is not a level; using DEBUG"
        level = logging.DEBUG
    for logger in LOGGERS:
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
    log.setLevel(level)
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        silence()
        return f"cannot write the log file {path} ({exc.strerror}); set [logging] file to a writable path"
    with contextlib.suppress(OSError):  # the log may name users and hosts: not for everyone
        os.chmod(path, 0o640)
    handler.setFormatter(logging.Formatter(FORMAT))
    for logger in LOGGERS:
        logger.addHandler(handler)
        logger.propagate = False
    log.info("command: %s (cwd %s, uid %d)", shlex.join(argv), os.getcwd(), os.getuid())
    log.debug("config files read: %s", ", ".join(config.files) or "none (defaults only)")
    return warning
