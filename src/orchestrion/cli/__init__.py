"""The ``orchestrion`` command line.

Internal: the commands, their options and exit codes are the contract, not these modules.
"""
