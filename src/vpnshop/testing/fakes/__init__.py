"""In-memory fakes of every port, one module per port, for unit tests of the core and for
shell tests.

Each fake satisfies its ``typing.Protocol`` structurally (a ``TYPE_CHECKING`` block at the
end of each module makes mypy catch drift) and records what happened so tests assert on
outcomes, not on calls to mocks. The storage fake lives in :mod:`vpnshop.testing.memory`
and is re-exported here.
"""

from vpnshop.testing.fakes.clock import FakeClock, SequentialIds
from vpnshop.testing.fakes.notifier import FakeNotifier, SentMessage
from vpnshop.testing.fakes.panel import FakePanel
from vpnshop.testing.fakes.payments import FakeGateway
from vpnshop.testing.fakes.ratelimit import FakeRateLimiter
from vpnshop.testing.memory import MemoryStore, MemoryUnitOfWork, memory_uow_factory

__all__ = [
    "FakeClock",
    "FakeGateway",
    "FakeNotifier",
    "FakePanel",
    "FakeRateLimiter",
    "MemoryStore",
    "MemoryUnitOfWork",
    "SentMessage",
    "SequentialIds",
    "memory_uow_factory",
]
