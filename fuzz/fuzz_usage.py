"""Invariant: any JSON as usage input gives a record that rebuilds from its payload, or TypeError/ValueError.

Run: python -m fuzz.fuzz_usage -max_total_time=60 fuzz/corpus/usage (or make fuzz).
"""

from fuzz.target import main

if __name__ == "__main__":
    main("usage_input")
