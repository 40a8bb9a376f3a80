"""Plans files (TOML): what an operator sells, in a file they can review and version.

```toml
[[plan]]
code = "month"
duration_days = 30
traffic_limit_gb = 0          # 0 = unlimited (or traffic_limit_bytes)
traffic_reset = "MONTH"       # NO_RESET | DAY | WEEK | MONTH | MONTH_ROLLING
device_limit = 3
squads = ["<internal squad uuid>"]
sort_order = 10
names = { ru = "1 месяц", en = "1 month" }
prices = { RUB = "199.00", XTR = 150, USD = "2.49" }
```
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vpnshop.domain.errors import DomainError, ValidationError
from vpnshop.domain.money import Money
from vpnshop.domain.plan import GIB, Plan, TrafficReset

EXAMPLE = Path(__file__).with_name("plans.example.toml")

_KNOWN = {
    "code",
    "duration_days",
    "traffic_limit_gb",
    "traffic_limit_bytes",
    "traffic_reset",
    "device_limit",
    "squads",
    "sort_order",
    "names",
    "prices",
    "active",
}


class PlansFileError(ValidationError):
    """A plans file that cannot be loaded; the message names the plan and field."""


def load_plans_file(path: str | Path) -> list[Plan]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise PlansFileError(f"{path}: cannot read: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise PlansFileError(f"{path}: not valid TOML: {e}") from e
    return parse_plans(data, source=str(path))


def parse_plans(data: Mapping[str, Any], source: str = "plans") -> list[Plan]:
    raw = data.get("plan")
    if not isinstance(raw, list) or not raw:
        raise PlansFileError(f"{source}: expected one or more [[plan]] tables")
    return [_plan(item, f"{source}: plan #{i + 1}") for i, item in enumerate(raw)]


def _plan(item: Any, where: str) -> Plan:
    if not isinstance(item, dict):
        raise PlansFileError(f"{where}: not a table")
    where = f"{where} ({item.get('code', '?')})"
    unknown = sorted(set(item) - _KNOWN)
    if unknown:
        raise PlansFileError(f"{where}: unknown field(s) {', '.join(unknown)}")
    try:
        names = item["names"]
        prices = item["prices"]
        if not isinstance(names, dict) or not isinstance(prices, dict):
            raise PlansFileError(f"{where}: names and prices are tables")
        if "traffic_limit_bytes" in item and "traffic_limit_gb" in item:
            raise PlansFileError(f"{where}: give traffic_limit_gb or traffic_limit_bytes")
        traffic = int(item.get("traffic_limit_bytes", int(item.get("traffic_limit_gb", 0)) * GIB))
        parsed_prices: dict[str, Money] = {}
        for code, value in prices.items():
            if isinstance(value, float):
                raise PlansFileError(f"{where}: price {code} must be a string or integer")
            money = Money.parse(str(value), code)
            parsed_prices[money.currency.code] = money
        device_limit = item.get("device_limit")
        return Plan(
            code=str(item["code"]),
            names={str(k): str(v) for k, v in names.items()},
            duration_days=int(item["duration_days"]),
            prices=parsed_prices,
            traffic_limit_bytes=traffic,
            traffic_reset=TrafficReset(str(item.get("traffic_reset", "NO_RESET")).upper()),
            device_limit=None if device_limit is None else int(device_limit),
            squads=tuple(str(s) for s in item.get("squads", ())),
            active=bool(item.get("active", True)),
            sort_order=int(item.get("sort_order", 0)),
        )
    except KeyError as e:
        raise PlansFileError(f"{where}: missing field {e.args[0]}") from None
    except PlansFileError:
        raise
    except DomainError as e:
        raise PlansFileError(f"{where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise PlansFileError(f"{where}: {e}") from None
