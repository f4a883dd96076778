"""The engine: owns live executions, feeds their state machines, commits, dispatches.

Internal: users reach it through ``orchestrion.Engine``, ``orchestrion.run`` and ``arun``.
"""
