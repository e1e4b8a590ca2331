"""Invariant: any bytes as fallback.yaml give a valid policy or PolicyError, never a half-built one.

Run: python -m fuzz.fuzz_policy -max_total_time=60 fuzz/corpus/policy (or make fuzz).
"""

from fuzz.target import main

if __name__ == "__main__":
    main("policy_bytes")
