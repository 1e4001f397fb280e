"""``python -m imgkit`` runs the ``imgkit`` command (useful where the script is not on PATH)."""

from imgkit.cli import main

raise SystemExit(main())
