"""``python -m flowlearn`` (and ``torchrun -m flowlearn``): the ``flowlearn`` command."""

import sys

from .cli.main import main

sys.exit(main())
