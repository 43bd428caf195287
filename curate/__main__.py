"""`python -m curate` is the `curate` console script."""

import sys

from curate.commands.cli import main

sys.exit(main())
