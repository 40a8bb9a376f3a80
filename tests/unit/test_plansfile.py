"""Plans files: each mistake names the plan and the field, and says what is valid."""

from __future__ import annotations

from typing import Any

import pytest

from vpnshop.plansfile import EXAMPLE, PlansFileError, load_plans_file, parse_plans

BASE: dict[str, Any] = {
    "code": "month",
    "duration_days": 30,
    "names": {"en": "1 month"},
    "prices": {"RUB": "199.00"},
}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "squads",
            ["not-a-uuid"],
            "squads: 'not-a-uuid' is not a squad uuid (`vpnshop panel check` lists them)",
        ),
        ("duration_days", "thirty", "duration_days: expected a whole number, got 'thirty'"),
        (
            "traffic_reset",
            "MONTHLY",
            "traffic_reset: expected one of NO_RESET, DAY, WEEK, MONTH, MONTH_ROLLING, "
            "got 'MONTHLY'",
        ),
        ("device_limit", 1.5, "device_limit: expected a whole number, got 1.5"),
        ("active", "yes", "active: expected true or false, got 'yes'"),
        ("prices", {"RUB": 1.5}, "prices: RUB must be a string or integer, got 1.5"),
    ],
)
def test_a_bad_field_is_named(field: str, value: object, message: str) -> None:
    """A wrong value is refused with the plan, the field and what is valid."""
    with pytest.raises(PlansFileError) as refused:
        parse_plans({"plan": [{**BASE, field: value}]}, source="plans.toml")
    assert str(refused.value) == f"plans.toml: plan #1 (month): {message}"


def test_good_values_are_accepted() -> None:
    """Squad uuids, a lower-case reset strategy and integer prices are fine, and the
    example file loads."""
    squad = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
    [plan] = parse_plans(
        {"plan": [{**BASE, "squads": [squad], "traffic_reset": "month", "prices": {"XTR": 150}}]}
    )
    assert plan.squads == (squad,) and plan.traffic_reset == "MONTH"
    assert len(load_plans_file(EXAMPLE)) == 4
