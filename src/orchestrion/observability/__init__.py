"""Logs, log context and Prometheus metrics shared by the service and the processes.

Internal: the log fields and metric names (docs/API.md) are the contract, not these modules.
"""
