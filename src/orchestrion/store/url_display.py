"""Connection URLs as they may be shown: in an error, a log line, a command's output.

A database or Redis URL often carries a password (``postgresql://app:s3cret@db/prod``,
``redis://:s3cret@cache:6379/0``, ``?password=s3cret``). Every message that names a URL names
it through ``redacted_url``, which hides the password wherever it is, also in a URL too
malformed to parse (the message is usually about exactly that).
"""

from __future__ import annotations

import re

__all__ = ["redacted_url"]

_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;][^=&;#]*(?:pass|pwd|secret|token)[^=&;#]*=)(?P<value>[^&;#]*)",
    re.IGNORECASE,
)


def redacted_url(url: str) -> str:
    """``url`` with any password (in the user info or the query) replaced by ``***``.

    The user info is everything before the last ``@`` (a password may hold ``@``, ``/``,
    ``?`` or ``#`` unescaped); an ``@`` later in the URL only hides more than needed."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if sep and "@" in rest:
        userinfo, _, host_and_rest = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if colon:
            text = f"{scheme}{sep}{user}:***@{host_and_rest}"
    return _SECRET_QUERY.sub(r"\g<key>***", text)
