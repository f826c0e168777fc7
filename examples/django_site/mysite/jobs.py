"""What the leader does: here, only say so (a real site starts its scheduler)."""

import logging
import os

from leaderelect import DemotionReason, Term

log = logging.getLogger("mysite")


def start(term: Term) -> None:
    log.info("process %d leads (token %d): starting the jobs", os.getpid(), term.token)


def stop(term: Term, reason: DemotionReason) -> None:
    log.info("process %d stopped leading (%s): stopping the jobs", os.getpid(), reason)
