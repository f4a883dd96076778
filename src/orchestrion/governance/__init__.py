"""Governance policy: masking, encryption keys, trust levels, network and LLM guards."""
