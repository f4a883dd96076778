"""State stores: SQLite, PostgreSQL and in-memory, behind one ``Store`` protocol.

Internal: choose a store with ``ORCHESTRION_DATABASE_URL``; tests use
``orchestrion.testing.MemoryStore``.
"""
