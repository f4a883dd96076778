"""Scale-out on PostgreSQL + Redis Streams: everything that talks to Redis lives here.

Internal: started through the ``orchestrion orchestrator``/``worker``/``reaper`` commands.
"""
