"""`python -m swift_ext.cli COMMAND ...`, the same as the `swift-ext` script."""
import sys

from swift_ext.cli import main

sys.exit(main())
