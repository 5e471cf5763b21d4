"""``python -m worker_runtime`` is the ``jobqueue`` command."""

from worker_runtime.cli import main

main()
