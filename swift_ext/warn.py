"""One warn-once for the package: a message logged the first time its cause is seen in a process.

Training must never stop for something swift-ext notices (a lost log line, an unscorable sample), and
must never flood the log either: each cause is told once per process. Internal module.
"""
from __future__ import annotations

import logging

from .forksafe import Lock

logger = logging.getLogger('swift_ext')
MAX_CHARS = 2000  # a message quoting user data is cut here

_SEEN: set = set()
_LOCK = Lock()


def warn_once(cause: str, message: str, *, limit: int = MAX_CHARS) -> bool:
    """Log ``message`` (cut to ``limit`` characters) if ``cause`` was not seen yet; True when it was logged."""
    with _LOCK:
        if cause in _SEEN:
            return False
        _SEEN.add(cause)
    if len(message) > limit:
        message = message[:limit] + f'... [{len(message) - limit} more characters]'
    logger.warning(message)
    return True


def reset_warnings() -> None:
    """Forget which causes were told (tests, a new run in the same process)."""
    with _LOCK:
        _SEEN.clear()
