"""The dispatch interface: the contract between the engine and whatever runs attempts.

Internal: the engine picks its dispatcher from the settings.
"""
