"""`python -m bkprov`: the same as the bkprov command."""

import sys

from bkprov.cli import main

sys.exit(main())
