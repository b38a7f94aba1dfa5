"""`python -m ccreid` (also what `torchrun -m ccreid train ...` starts)."""

import sys

from ccreid.cli import main

sys.exit(main())
