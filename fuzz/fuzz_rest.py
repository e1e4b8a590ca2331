"""Invariant: any bytes as Stigg's answer give a parsed snapshot or StiggUnavailableError.

Run: python -m fuzz.fuzz_rest -max_total_time=60 fuzz/corpus/rest (or make fuzz).
"""

from fuzz.target import main

if __name__ == "__main__":
    main("rest_body")
