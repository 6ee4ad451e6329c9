"""``python -m joulescore.cli``: the same entry point as the ``joulescore`` command."""

from joulescore.cli import main

main()
