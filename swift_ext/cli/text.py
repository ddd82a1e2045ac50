"""Text someone else wrote, made safe to show: every command prints through ``echo``.

Log files, result files, datasets and image paths may come from runs that are not yours. A reward
named ``\\x1b]0;...\\x07`` would retitle the terminal, ``\\x1b[2J`` clear it, a ``\\r`` hide what came
before it on the line, a U+202E turn the rest of the line around. ``visible`` shows each such
character as an escape (``\\x1b``, ``\\r``, ``\\u202e``) instead of sending it: C0 controls (tab and
newline kept), DEL, C1 controls, Unicode's bidirectional controls and line separators, and lone
surrogates (valid in Python's JSON, unencodable as UTF-8). The same escape serves the HTML pages
(``page.esc``), so a name reads the same in the terminal and in the report.

``echo`` prints, ``Formatter`` logs, ``ArgumentParser`` reports usage errors: all through
``visible``; no module in ``cli`` calls ``print`` itself (a test checks).
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Any

_UNSAFE = re.compile('[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069'
                     '\ud800-\udfff]')


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f'\\x{code:02x}' if code < 0x100 else f'\\u{code:04x}'


def visible(text: Any) -> str:
    """``str(text)`` with every character that could steer a terminal or break UTF-8 shown as an escape."""
    return _UNSAFE.sub(_escape, text if isinstance(text, str) else str(text))


def echo(*parts: Any, err: bool = False, sep: str = ' ') -> None:
    """Print ``parts`` (to stderr with ``err``) with ``visible`` applied: the one way commands print."""
    print(visible(sep.join(map(str, parts))), file=sys.stderr if err else sys.stdout)


class Formatter(logging.Formatter):
    """A log line with ``visible`` applied (warnings name images by their paths)."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record))


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose error messages (which quote the arguments given) go through ``visible``."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f'{self.prog}: error: {visible(message)}\n')
