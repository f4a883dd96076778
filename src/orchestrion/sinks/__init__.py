"""Outbound events: where the engine's transitions are published, and how.

``config.py`` reads the sinks an operator configures; ``envelope.py`` is what every sink
publishes for one journal record; ``base.py`` is the interface each sink implements;
``webhook.py``, ``nats.py`` and ``kafka.py`` are sinks (the Redis Stream one lives with the
other Redis code, in ``cluster/event_stream.py``). The engine's publisher
(``engine/publishing.py``) drains the store's outbox into them, off the engine's turn.
"""
