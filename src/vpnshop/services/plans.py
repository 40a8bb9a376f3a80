"""Plan use cases."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from vpnshop.domain.actor import Actor
from vpnshop.domain.errors import ValidationError
from vpnshop.domain.plan import Plan
from vpnshop.services.deps import Deps, record


@attrs.frozen
class LoadReport:
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


@attrs.frozen
class LoadPlans:
    """Store plans (from a plans file): new ones are created, changed ones replaced,
    identical ones left alone, so loading the same file twice changes nothing. Plans not
    in the file are kept as they are (an admin disables them explicitly)."""

    deps: Deps

    async def __call__(self, plans: Sequence[Plan], *, actor: Actor) -> LoadReport:
        codes = [p.code for p in plans]
        duplicates = sorted({c for c in codes if codes.count(c) > 1})
        if duplicates:
            raise ValidationError(f"plan codes appear twice: {', '.join(duplicates)}")
        created: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        async with self.deps.uow() as uow:
            for plan in plans:
                existed = await uow.plans.get(plan.code) is not None
                if not await uow.plans.upsert(plan):
                    unchanged.append(plan.code)
                    continue
                (updated if existed else created).append(plan.code)
                await record(
                    uow,
                    self.deps.now(),
                    actor,
                    "plan.update" if existed else "plan.create",
                    f"plan:{plan.code}",
                )
            await uow.commit()
        return LoadReport(tuple(created), tuple(updated), tuple(unchanged))


@attrs.frozen
class ListPlans:
    deps: Deps

    async def __call__(self, *, active_only: bool = True) -> list[Plan]:
        async with self.deps.uow() as uow:
            return await uow.plans.list(active_only=active_only)
