"""`python -m stigg_cache.benchmarks`."""

from stigg_cache.benchmarks import main

raise SystemExit(main())
