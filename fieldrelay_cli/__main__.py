"""`python -P -m fieldrelay_cli ...` is the `fieldrelay` command (the worker supervisor starts Celery so)."""

import sys

from fieldrelay_cli.main import main

sys.exit(main())
