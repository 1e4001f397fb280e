"""``python -m benchmarks``: run the benchmarks and print the table."""

from benchmarks._cli import main

raise SystemExit(main())
