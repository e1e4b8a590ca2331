"""Invariant: any bytes as an Edge/GraphQL entitlementsState answer give a parsed snapshot or StiggUnavailableError.

Run: python -m fuzz.fuzz_state -max_total_time=60 fuzz/corpus/state (or make fuzz).
"""

from fuzz.target import main

if __name__ == "__main__":
    main("state_body")
