"""Sandboxed Jinja2 templates: parsing, rendering, bounds and secrets.

Internal: workflows use templates through ``{{ ... }}`` in their definitions.
"""
