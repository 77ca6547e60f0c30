"""``python -m rlport`` is the ``rlport`` command."""

import sys

from rlport.cli.main import main

sys.exit(main())
