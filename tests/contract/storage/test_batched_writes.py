"""The batched writes of the customer jobs: many outbox jobs in one statement, many
broadcast recipients claimed in one statement, each exactly as its one-at-a-time form."""

from __future__ import annotations

from tests.contract.storage.builders import T0, Factory, new_job
from tests.integration.shop import ADMIN, make_shop
from vpnshop.domain.broadcast import RecipientStatus, Segment
from vpnshop.services.broadcasts import CreateBroadcast


async def test_outbox_add_many_adds_each_new_key_once(uow_factory: Factory) -> None:
    """add_many() skips keys already stored and repeated keys, and counts only the added."""
    async with uow_factory() as uow:
        assert await uow.outbox.add(new_job("page:1")) is True
        await uow.commit()
    async with uow_factory() as uow:
        jobs = [new_job("page:1"), new_job("page:2"), new_job("page:3"), new_job("page:2")]
        assert await uow.outbox.add_many(jobs) == 2
        assert await uow.outbox.add_many([]) == 0
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.outbox.add_many(jobs) == 0
        assert await uow.outbox.pending_count() == 3


async def test_claim_recipients_claims_at_most_limit_in_order(uow_factory: Factory) -> None:
    """claim_recipients() marks exactly *limit* pending recipients in flight, lowest
    customer ids past *after* first, and never the same one twice."""
    shop = await make_shop(uow_factory)
    ids = sorted([await shop.customer(tid) for tid in range(700, 707)])
    created = await CreateBroadcast(shop.deps)(Segment.ALL, "batch", actor=ADMIN)
    bid = created.broadcast.id or 0
    async with uow_factory() as uow:
        first = await uow.broadcasts.claim_recipients(bid, T0, 0, 3)
        second = await uow.broadcasts.claim_recipients(bid, T0, 0, 3)
        past = await uow.broadcasts.claim_recipients(bid, T0, ids[-1], 3)
        await uow.commit()
    assert [r.customer_id for r in first] == ids[:3]
    assert [r.customer_id for r in second] == ids[3:6]
    assert past == []
    async with uow_factory() as uow:
        progress = await uow.broadcasts.progress(bid)
        assert await uow.broadcasts.finish(bid, ids[0], RecipientStatus.SENT, T0)
        await uow.commit()
    assert progress is not None
    assert (progress.in_flight, progress.pending) == (6, 1)
