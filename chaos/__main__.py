"""python -m chaos: the same as python -m chaos.run."""

import sys

from .run import main

sys.exit(main())
