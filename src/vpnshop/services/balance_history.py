"""A customer's balance history: their ledger entries, newest first, a page at a time."""

from __future__ import annotations

from datetime import datetime

import attrs

from vpnshop.domain.errors import NotFoundError, ValidationError
from vpnshop.domain.ledger import EntryKind
from vpnshop.domain.money import Money
from vpnshop.services.deps import Deps

MAX_PAGE_SIZE = 50


@attrs.frozen
class HistoryEntry:
    kind: EntryKind
    amount: Money
    reference: str | None
    created_at: datetime | None


@attrs.frozen
class HistoryPage:
    """Page *page* (from 0) of *page_size* entries; ``has_next`` when older ones exist."""

    entries: tuple[HistoryEntry, ...]
    page: int
    page_size: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 0


@attrs.frozen
class GetBalanceHistory:
    deps: Deps

    async def __call__(self, customer_id: int, page: int = 0, page_size: int = 10) -> HistoryPage:
        if page < 0:
            raise ValidationError("a page number is 0 or more")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValidationError(f"a page holds 1 to {MAX_PAGE_SIZE} entries")
        async with self.deps.reader() as uow:
            if await uow.customers.get(customer_id) is None:
                raise NotFoundError(f"customer {customer_id}")
            # One more than a page tells whether a next page exists without a count.
            rows = await uow.ledger.entries(customer_id, page_size + 1, page * page_size)
        entries = tuple(
            HistoryEntry(e.kind, e.amount, e.reference, e.created_at) for e in rows[:page_size]
        )
        return HistoryPage(entries, page, page_size, has_next=len(rows) > page_size)
