"""The engine's private parts: what drives the pure decision core through I/O.

Each module is the impure twin of a :mod:`stigg_cache.core` module of the same
name (``walk``, ``ledger``, ``breaker``, ``reconcile``), or serves them
(``fetcher``, ``fastpath``). Nothing here is public: the clients and the
composition root (:mod:`stigg_cache._runtime`) are its only importers.
"""
