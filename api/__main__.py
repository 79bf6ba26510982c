"""``python -m api``: the same as the ``ctxlog`` command."""

import sys

from .cli import main

sys.exit(main())
