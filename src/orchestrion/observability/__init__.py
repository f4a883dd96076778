"""Logs, log context and Prometheus metrics shared by the service and the processes."""
