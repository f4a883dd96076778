"""The book of signed-out sessions under a flood of sign-outs: it stays bounded, and a
session it can no longer list is still refused, never valid again."""

from __future__ import annotations

from orchestrion.api.sessions import SessionBook, SessionKey, Ticket, issue

KEY = SessionKey.of("book-test-key-0123456789")
NOW = 1_800_000_000.0


class SmallBook(SessionBook):
    _LIMIT = 10


def _ticket(expires_in: float) -> Ticket:
    return issue(KEY, expires_in, now=NOW)[1]


def test_a_signed_out_session_stays_ended_when_a_flood_overflows_the_book() -> None:
    book = SmallBook()
    victim = _ticket(3600)
    book.end(victim, now=NOW)
    flood = [_ticket(7200 + i) for i in range(SmallBook._LIMIT * 3)]
    for ticket in flood:
        book.end(ticket, now=NOW)

    assert len(book._ended) <= SmallBook._LIMIT
    assert book.ended(victim)
    assert all(book.ended(ticket) for ticket in flood)


def test_an_overflow_ends_the_sessions_expiring_first_and_spares_later_ones() -> None:
    book = SmallBook()
    early, late = _ticket(60), _ticket(10 * 3600)  # never signed out
    for i in range(SmallBook._LIMIT + 1):
        book.end(_ticket(3600 + i), now=NOW)

    assert book.ended(early)  # expires before sessions the book had to forget
    assert not book.ended(late)
