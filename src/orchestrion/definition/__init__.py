"""Workflow definitions: loading, dialects, the model and its validation.

Internal: use ``orchestrion.load_definition`` and ``orchestrion.WorkflowSpec``.
"""
