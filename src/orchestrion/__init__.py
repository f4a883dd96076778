"""Orchestrion: durable workflow orchestration."""
