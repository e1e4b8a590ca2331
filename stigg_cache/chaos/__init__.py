"""Chaos runs: scenarios (a timeline of faults, a workload, the invariants each run must
keep) and their runner (`stigg-cache chaos run`). The fakes they run against (Stigg on
loopback, its GraphQL and sidecar faces, the fault proxy) are public test doubles in
:mod:`stigg_cache.testing`."""
