"""``python -m tidelake.cli``: the same as the ``tidelake`` command."""

import sys

from tidelake.cli import main

sys.exit(main())
