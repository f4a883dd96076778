"""Governance policy: masking, encryption keys, trust levels, network and LLM guards.

Internal: the policy file (docs/GOVERNANCE.md) is the contract, not these modules.
"""
