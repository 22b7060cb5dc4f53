"""`python -m sandbox`: serve the three API sandboxes on their documented local ports."""

from sandbox.server import main

main()
