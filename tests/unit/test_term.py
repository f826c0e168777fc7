"""A term's values: one name for the token, and the old one still answers (with a warning)."""

from __future__ import annotations

import pytest

import leaderelect
from leaderelect import Term
from leaderelect.session import Lease


def test_the_token_has_one_name_and_the_old_one_is_deprecated() -> None:
    lease = Lease(0x1F, 10, leaderelect.clock() + 9)
    term = Term("jobs", "jobs/1f", 42, 0x1F, "me", leaderelect.clock(), lease)
    assert term.token == 42
    with pytest.warns(DeprecationWarning, match="Term.token"):
        assert term.fencing_token == 42
