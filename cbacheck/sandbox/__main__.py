"""Run the sandbox tenant: ``python -m cbacheck.sandbox`` (same options as ``cbacheck sandbox``)."""

from __future__ import annotations

import sys

from cbacheck.sandbox.command import main

if __name__ == "__main__":
    sys.exit(main())
