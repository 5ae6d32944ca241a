"""The `shepherd` command: status, rollouts, approval and teardown against AWS or the local cloud.

Only `shepherd local` and `shepherd demo` import the local cloud (the `local` extra).
"""
