"""``python -m actors.serve.worker``: a worker process (see :mod:`actors.serve.worker._main`)."""

import sys

from ._main import main

sys.exit(main())
