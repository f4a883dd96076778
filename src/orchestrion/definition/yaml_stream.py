"""Build a plain YAML document's data straight from libyaml's events, without a node tree.

PyYAML's safe loader composes the whole document into node objects (each with two marks),
then constructs the data from them in Python: for a definition of 100,000 nodes that is a
million node objects held at once and a generator per mapping, several times the time and
memory of reading the same definition from JSON. Most definitions use none of what needs
the node tree: no anchors or aliases, no explicit tags, no merge keys, no duplicate keys.

``plain_data`` reads such a document from the parser's events, one at a time, into dicts,
lists and scalars resolved exactly as the safe loader resolves them (its own resolver and
constructors, libyaml's parser when PyYAML was built with it), and checks each scalar as
``safe_data.check`` would, so the data needs no second walk. Any event outside that plain
subset, and any value the strict loader or ``safe_data`` would refuse, makes it return
``NOT_PLAIN`` instead:
the caller then reads the document the careful way (``definition/reading.py``), which checks
aliases, names the line of a duplicate key or a bad value, and reports syntax errors. No line
numbers are kept here; a caller that needs one for an issue composes the text again then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from orchestrion import safe_data

__all__ = ["NOT_PLAIN", "plain_data"]

NOT_PLAIN: Final = object()
"""What ``plain_data`` returns for a document it leaves to the careful reader."""

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_MERGE = "tag:yaml.org,2002:merge"


class _NotPlain(Exception):
    """Raised inside the event loop to hand the document over (never escapes)."""


def plain_data(text: str, loader_class: type[Any], max_int_text: int) -> Any:
    """The document's data, or ``NOT_PLAIN`` (see the module docstring).

    ``loader_class`` is the safe loader to parse and resolve with; an integer written with
    more than ``max_int_text`` characters is left to the careful reader, which refuses it.
    """
    import yaml
    from yaml.events import (
        AliasEvent,
        MappingEndEvent,
        MappingStartEvent,
        ScalarEvent,
        SequenceEndEvent,
        SequenceStartEvent,
        StreamEndEvent,
    )

    loader = loader_class(text)
    get = loader.get_event
    constructors: dict[str | None, Callable[[Any, yaml.Node], Any]] = loader.yaml_constructors
    scalar_node = yaml.ScalarNode
    resolve = loader.resolve
    tags: dict[str, str] = {}  # plain scalar -> its resolved tag: ids and keys repeat
    open_items: list[list[Any]] = [[]]  # the open collections' items; [0] holds the root
    add = open_items[0].append
    try:
        get()  # StreamStartEvent
        if type(get()) is StreamEndEvent:  # an empty text
            return None
        while True:
            event = get()
            kind = type(event)
            if kind is ScalarEvent:
                if event.anchor is not None or event.tag is not None:
                    raise _NotPlain
                value = event.value
                if event.implicit[0]:  # plain: the resolver decides its type
                    tag = tags.get(value)
                    if tag is None:
                        tag = resolve(scalar_node, value, (True, False))
                        tag = tags[value] = _STR if tag == _STR else tag  # `is` below
                    if tag is not _STR:
                        value = _construct(loader, constructors, tag, value, max_int_text)
                        safe_data.check(value)  # a number: its size, NaN, infinity
                        add(value)
                        continue
                if not value.isascii():
                    safe_data.check_text(value)  # a lone surrogate
                add(value)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.anchor is not None or event.tag is not None:
                    raise _NotPlain
                items: list[Any] = []
                open_items.append(items)
                add = items.append
            elif kind is MappingEndEvent:
                items = open_items.pop()
                pairs = iter(items)
                mapping = dict(zip(pairs, pairs, strict=True))  # unhashable key: TypeError
                if 2 * len(mapping) != len(items):
                    raise _NotPlain  # a duplicate key: the careful reader names its line
                add = open_items[-1].append
                add(mapping)
            elif kind is SequenceEndEvent:
                items = open_items.pop()
                add = open_items[-1].append
                add(items)
            elif kind is AliasEvent:
                raise _NotPlain
            else:  # DocumentEndEvent
                break
        if type(get()) is not StreamEndEvent:  # a second document
            raise _NotPlain
    # UnsafeData is a ValueError: the careful reader names where the value is.
    except (_NotPlain, yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError):
        return NOT_PLAIN
    finally:
        loader.dispose()
    return open_items[0][0]


def _construct(
    loader: Any,
    constructors: dict[str | None, Callable[[Any, Any], Any]],
    tag: str,
    value: str,
    max_int_text: int,
) -> Any:
    import yaml

    if tag == _MERGE or tag not in constructors or (tag == _INT and len(value) > max_int_text):
        raise _NotPlain
    return constructors[tag](loader, yaml.ScalarNode(tag, value))
