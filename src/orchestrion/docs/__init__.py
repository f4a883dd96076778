"""Reference documents generated from the code, so that they cannot drift from it.

Internal: run as ``python -m orchestrion.docs.handlers``.
"""
