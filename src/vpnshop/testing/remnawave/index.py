"""The emulator's user table: users by numeric id, indexed by every other key a lookup
uses, so that finding a user never scans them all."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, MutableMapping

from vpnshop.testing.remnawave.model import EmuUser

# The indexed fields, in the order of UserTable._indexes.
_UUID, _USERNAME, _SHORT_UUID, _TELEGRAM_ID = range(4)


def _keys(user: EmuUser) -> tuple[Hashable, ...]:
    return (user.uuid, user.username, user.short_uuid, user.telegram_id)


class UserTable(MutableMapping[int, EmuUser]):
    """Users by id (a dict to its callers), with indexes on uuid, username, short uuid and
    telegram id kept in step with every insert, delete and :meth:`reindex`.

    The records are mutable: whoever changes an indexed field of a stored user calls
    :meth:`reindex` (the emulator does after a revoke or an update).
    """

    def __init__(self) -> None:
        self._rows: dict[int, EmuUser] = {}
        self._indexed: dict[int, tuple[Hashable, ...]] = {}
        # key -> the ids that have it, in insertion order (a dict used as an ordered set)
        self._indexes: tuple[dict[Hashable, dict[int, None]], ...] = tuple({} for _ in range(4))

    def __getitem__(self, user_id: int) -> EmuUser:
        return self._rows[user_id]

    def __setitem__(self, user_id: int, user: EmuUser) -> None:
        if user_id in self._rows:
            self._unindex(user_id)
        self._rows[user_id] = user
        self._index(user_id, user)

    def __delitem__(self, user_id: int) -> None:
        del self._rows[user_id]
        self._unindex(user_id)

    def __iter__(self) -> Iterator[int]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def reindex(self, user: EmuUser) -> None:
        """Bring the indexes up to date after an indexed field of *user* changed."""
        self._unindex(user.id)
        self._index(user.id, user)

    def by_uuid(self, value: str) -> EmuUser | None:
        return self._first(_UUID, value)

    def by_username(self, value: str) -> EmuUser | None:
        return self._first(_USERNAME, value)

    def by_short_uuid(self, value: str) -> EmuUser | None:
        return self._first(_SHORT_UUID, value)

    def with_telegram_id(self, value: int) -> list[EmuUser]:
        """Every user with this telegram id, by id."""
        ids = self._indexes[_TELEGRAM_ID].get(value, {})
        return [self._rows[i] for i in sorted(ids)]

    def _first(self, index: int, value: Hashable) -> EmuUser | None:
        ids = self._indexes[index].get(value)
        return self._rows[next(iter(ids))] if ids else None

    def _index(self, user_id: int, user: EmuUser) -> None:
        keys = _keys(user)
        self._indexed[user_id] = keys
        for index, key in zip(self._indexes, keys, strict=True):
            if key is not None:
                index.setdefault(key, {})[user_id] = None

    def _unindex(self, user_id: int) -> None:
        for index, key in zip(self._indexes, self._indexed.pop(user_id), strict=True):
            if key is None:
                continue
            ids = index[key]
            del ids[user_id]
            if not ids:
                del index[key]
