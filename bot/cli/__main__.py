"""``python -m bot.cli``: the same entry point as the ``passerelle`` command."""

from bot.cli import main

raise SystemExit(main())
