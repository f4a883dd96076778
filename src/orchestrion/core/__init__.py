"""The engine core: compiled plans, the execution state machine, its events and backoff.

Internal: users reach it through ``orchestrion.Engine``; results and states are re-exported
from ``orchestrion``.
"""
