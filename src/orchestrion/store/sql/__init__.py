"""The SQL stores: one ``Store`` in SQL (``core.py``) and its dialects, ``sqlite.py`` (the
embedded store) and ``postgres.py`` (the scale-out store)."""
