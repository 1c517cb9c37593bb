"""What conditional writes mean alike in every object store: a lost race, a version that is
gone, a versioned read that is too large."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from crdb_archive.errors import BadInput, ConditionFailed
from crdb_archive.storage.base import Versioned

E = TypeVar("E", bound=Exception)


@dataclass(frozen=True)
class Answers(Generic[E]):
    """How one store's SDK says that a condition failed: its error type, the code of an
    error, and the codes of a lost race and of an object that is gone."""

    error: type[E]
    code: Callable[[E], str]
    lost_race: frozenset[str]
    gone: frozenset[str]


@contextmanager
def lost_races(answers: Answers[E], action: str, where: str, *, gone_fails: bool
               ) -> Iterator[None]:
    """Turns the SDK's answer that another writer got there first into ConditionFailed
    (also for a gone object, when ``gone_fails``); other errors pass unchanged."""
    try:
        yield
    except answers.error as error:
        code = answers.code(error)
        if code in answers.lost_race:
            raise ConditionFailed(f"cannot {action} {where}: another writer "
                                  f"changed it first ({code})") from None
        if gone_fails and code in answers.gone:
            raise ConditionFailed(f"cannot {action} {where}: it is gone") from None
        raise


def versioned(found: tuple[bytes, str] | None, limit: int, where: str) -> Versioned | None:
    """A small read's content and version as Versioned; raises BadInput when the content is
    larger than ``limit``."""
    if found is None:
        return None
    content, version = found
    if len(content) > limit:
        raise BadInput(f"{where} is larger than {limit} bytes; refusing to read it whole")
    return Versioned(content, version)
