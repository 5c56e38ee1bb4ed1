"""One page of a paginated listing (files, search results, accounts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


def page_count(total: int, page_size: int) -> int:
    """Pages needed for ``total`` items, ``page_size`` per page."""
    return (total + page_size - 1) // page_size


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int
    #: False when ``total`` is a lower bound (a search count that stopped at its cap)
    total_exact: bool = True

    @property
    def total_pages(self) -> int:
        return page_count(self.total, self.page_size)
