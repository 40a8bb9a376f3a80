"""Repositories over SQLAlchemy Core (not the ORM: a payment is confirmed in a handful of
statements, and the ORM's load-modify-flush is what limits throughput on these machines),
one module per aggregate.

Every method documented as atomic in ``vpnshop.ports.storage`` is one conditional
statement here (``INSERT ... ON CONFLICT DO NOTHING RETURNING``, ``UPDATE ... WHERE
<precondition> RETURNING``), correct on SQLite and PostgreSQL with any number of processes.
"""

from vpnshop.adapters.storage.repositories.audit import SqlAudit
from vpnshop.adapters.storage.repositories.broadcasts import SqlBroadcasts
from vpnshop.adapters.storage.repositories.cursors import SqlCursors
from vpnshop.adapters.storage.repositories.customers import SqlCustomers
from vpnshop.adapters.storage.repositories.leases import SqlLeases
from vpnshop.adapters.storage.repositories.ledger import SqlHolds, SqlLedger
from vpnshop.adapters.storage.repositories.orders import SqlOrders
from vpnshop.adapters.storage.repositories.outbox import SqlOutbox
from vpnshop.adapters.storage.repositories.panel_users import SqlPanelUsers
from vpnshop.adapters.storage.repositories.payments import (
    SqlPayments,
    _payment,  # the PostgreSQL settler reads payment rows the same way
)
from vpnshop.adapters.storage.repositories.plans import SqlPlans
from vpnshop.adapters.storage.repositories.promos import SqlPromos
from vpnshop.adapters.storage.repositories.referrals import SqlReferrals
from vpnshop.adapters.storage.repositories.subscriptions import SqlSubscriptions, SqlTrials

__all__ = [
    "SqlAudit",
    "SqlBroadcasts",
    "SqlCursors",
    "SqlCustomers",
    "SqlHolds",
    "SqlLeases",
    "SqlLedger",
    "SqlOrders",
    "SqlOutbox",
    "SqlPanelUsers",
    "SqlPayments",
    "SqlPlans",
    "SqlPromos",
    "SqlReferrals",
    "SqlSubscriptions",
    "SqlTrials",
    "_payment",
]
