"""`python -m splatgen ...` is the `splatgen` command (for checkouts run without installing)."""

import sys

from splatgen.cli import main

sys.exit(main())
