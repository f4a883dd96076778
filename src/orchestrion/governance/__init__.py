"""Governance (issue #6): audit chain integrity first; policy, masking and encryption follow."""
