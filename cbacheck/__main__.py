"""Run cbacheck as `python -m cbacheck`."""

from __future__ import annotations

import sys

from cbacheck.cli import main

sys.exit(main())
