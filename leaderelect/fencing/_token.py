"""The token a fence checks, from a Term or a plain integer."""

from __future__ import annotations

from typing import Union

from leaderelect.exceptions import StaleTermError
from leaderelect.term import Term

TermLike = Union[Term, int]


def token_and_time_left(term: TermLike, resource: str) -> tuple[int, float | None]:
    """``(token, seconds left in the term)``; the seconds are None for a bare token.

    A Term whose local deadline has passed is refused here, before the resource is asked:
    the term is over, whatever the resource would say.
    """
    if isinstance(term, Term):
        left = term.valid_for()
        if left <= 0:
            raise StaleTermError(
                f"the term with token {term.token} is over by the local clock; nothing was written to {resource!r}",
                resource=resource,
                token=term.token,
                seen=None,
            )
        return term.token, left
    if isinstance(term, bool) or not isinstance(term, int) or not 0 < term < MAX_TOKEN:
        raise TypeError(f"a fence needs a Term or a token in (0, 2**53), not {term!r}")
    return term, None


#: tokens are etcd revisions; Redis compares them as Lua numbers, exact below 2**53
MAX_TOKEN = 2**53
