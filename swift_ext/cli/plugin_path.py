"""`swift-ext plugin-path`: the absolute path of the plugin file shipped inside the package."""
from __future__ import annotations

import os

from .text import ArgumentParser, echo


def plugin_path() -> str:
    """The file to pass to ms-swift's ``--external_plugins``."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'plugin.py')


def main(argv: list[str] | None = None) -> int:
    ArgumentParser(prog='swift-ext plugin-path', description=__doc__).parse_args(argv)
    echo(plugin_path())
    return 0
