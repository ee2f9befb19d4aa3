"""`python -m gnnrl.cli` (e.g. under torchrun) is the `gnnrl` command."""

import sys

from . import main

sys.exit(main())
