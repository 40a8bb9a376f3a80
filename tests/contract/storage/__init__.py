"""The storage contract: the same tests against every backend of ``vpnshop.ports.storage``,
one module per repository.

Every test uses only the ``uow_factory`` fixture (a zero-argument callable returning a
fresh unit of work on a fresh, empty database), so that it runs unchanged on the
in-memory store, SQLite and PostgreSQL. The builders of rows live in ``builders``.
"""
