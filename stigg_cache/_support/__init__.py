"""What every edge stands on: clocks, forks, fault logs, files, URLs, SQLite, plug-ins.

Below the stores, the outbox, the adapters and the policy, above only the
errors: each of those edges may use these, and none of these knows them.
"""
