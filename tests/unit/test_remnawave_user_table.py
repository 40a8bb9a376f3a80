"""The panel emulator's user table: a dict by id whose indexes follow every change."""

from __future__ import annotations

from datetime import UTC, datetime

from vpnshop.testing.remnawave.index import UserTable
from vpnshop.testing.remnawave.model import EmuUser

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def user(user_id: int, username: str, *, telegram_id: int | None = None) -> EmuUser:
    """A stored user with predictable keys derived from *user_id*."""
    return EmuUser(
        id=user_id,
        uuid=f"00000000-0000-4000-8000-{user_id:012d}",
        short_uuid=f"short{user_id}",
        username=username,
        expire_at=NOW,
        created_at=NOW,
        updated_at=NOW,
        telegram_id=telegram_id,
    )


def test_lookups_find_users_by_every_key() -> None:
    """A stored user is found by uuid, username and short uuid; unknown keys find nobody."""
    table = UserTable()
    alice = user(1, "alice", telegram_id=7)
    table[1] = alice
    table[2] = user(2, "bob")
    assert table.by_uuid(alice.uuid) is alice
    assert table.by_username("alice") is alice
    assert table.by_short_uuid("short1") is alice
    assert table.by_username("carol") is None
    assert table.by_short_uuid("short9") is None
    assert len(table) == 2 and list(table) == [1, 2]


def test_telegram_id_finds_every_user_in_id_order() -> None:
    """Several users may share a telegram id: all of them come back, by id."""
    table = UserTable()
    table[5] = user(5, "e", telegram_id=42)
    table[3] = user(3, "c", telegram_id=42)
    table[4] = user(4, "d", telegram_id=9)
    assert [u.id for u in table.with_telegram_id(42)] == [3, 5]
    assert table.with_telegram_id(1) == []


def test_delete_and_clear_drop_users_from_the_indexes() -> None:
    """A deleted user, or every user after clear(), is no longer found by any key."""
    table = UserTable()
    table[1] = user(1, "alice", telegram_id=7)
    table[2] = user(2, "bob", telegram_id=7)
    del table[1]
    assert table.by_username("alice") is None
    assert [u.id for u in table.with_telegram_id(7)] == [2]
    table.clear()
    assert table.by_username("bob") is None and table.with_telegram_id(7) == []


def test_reindex_follows_a_changed_key() -> None:
    """After reindex(), a user is found by its new short uuid and telegram id, not the old."""
    table = UserTable()
    alice = user(1, "alice", telegram_id=7)
    table[1] = alice
    alice.short_uuid, alice.telegram_id = "renewed", 8
    table.reindex(alice)
    assert table.by_short_uuid("short1") is None
    assert table.by_short_uuid("renewed") is alice
    assert table.with_telegram_id(7) == [] and table.with_telegram_id(8) == [alice]


def test_replacing_a_user_reindexes_it() -> None:
    """Storing another record under an existing id replaces the old one in every index."""
    table = UserTable()
    table[1] = user(1, "alice")
    table[1] = user(1, "alicia")
    assert table.by_username("alice") is None
    assert table.by_username("alicia") is table[1]
