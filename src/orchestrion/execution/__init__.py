"""Running one node attempt: render, validate, call the handler, report the outcome.

Internal: handler authors use ``orchestrion.handlers``; the engine and workers use this.
"""
