"""What every fuzz target runs: one invariant from ``properties``, under atheris."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from fuzz import properties


def main(invariant: str) -> None:
    """Fuzz ``properties.<invariant>`` with libFuzzer's arguments from the command line."""
    atheris.Setup(sys.argv, getattr(properties, invariant))
    atheris.Fuzz()
