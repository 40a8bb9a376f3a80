"""The audit trail: who did what to whom, for every admin and money action."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import attrs

from vpnshop.domain.actor import Actor


@attrs.frozen(hash=False)
class AuditEntry:
    actor: Actor
    action: str
    subject: str
    at: datetime
    details: Mapping[str, object] = attrs.field(factory=dict)
    id: int | None = None
