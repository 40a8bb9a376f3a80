"""What the shop knows of a VPN panel user, and what it wants the user to be."""

from __future__ import annotations

import enum
import re
import string
from datetime import datetime

import attrs

from vpnshop.domain.errors import ValidationError
from vpnshop.domain.plan import TrafficReset

# What Remnawave accepts, and how shop subscriptions are named there.
SHOP_TAG_PATTERN = re.compile(r"^[A-Z0-9_]{1,16}$")
USERNAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{3,36}$")
#: The largest subscription id a template must still render validly (a signed BIGINT).
MAX_SUBSCRIPTION_ID = 2**63 - 1
_TEMPLATE_FIELDS = frozenset({"subscription_id", "customer_id"})


def render_username(template: str, subscription_id: int, customer_id: int = 0) -> str:
    """The panel username of one shop subscription.

    Only ``{subscription_id}`` (required) and ``{customer_id}`` may appear in *template*
    (the same fields as the service's ``PanelNaming``). Fixed text around the decimal
    subscription id is injective, so distinct subscriptions always get distinct usernames.
    """
    if subscription_id < 0 or customer_id < 0:
        raise ValueError("subscription and customer ids cannot be negative")
    return template.format(subscription_id=subscription_id, customer_id=customer_id)


def check_username_template(template: str) -> None:
    """Refuse a template unless every pair of ids from 0 to a BIGINT renders to a valid
    Remnawave username (``^[a-zA-Z0-9_-]{3,36}$``)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValidationError(f"username_template {template!r} is malformed: {exc}") from exc
    if "subscription_id" not in fields:
        raise ValidationError(
            f"username_template {template!r} must contain {{subscription_id}}: it is what "
            "makes the username unique per shop subscription"
        )
    unknown = set(fields) - _TEMPLATE_FIELDS
    if unknown:
        raise ValidationError(
            f"username_template {template!r} uses unknown fields {sorted(unknown)}; "
            f"allowed: {sorted(_TEMPLATE_FIELDS)}"
        )
    for sub_id, customer_id in ((0, 0), (1, 1), (MAX_SUBSCRIPTION_ID, MAX_SUBSCRIPTION_ID)):
        try:
            rendered = render_username(template, sub_id, customer_id)
        except (ValueError, IndexError, KeyError) as exc:
            raise ValidationError(
                f"username_template {template!r} cannot be rendered: {exc}"
            ) from exc
        if not USERNAME_PATTERN.match(rendered):
            raise ValidationError(
                f"username_template {template!r} renders {rendered!r} for subscription id "
                f"{sub_id}, which is not a valid Remnawave username (^[a-zA-Z0-9_-]{{3,36}}$); "
                "it must stay valid up to the largest id (19 digits)"
            )


class PanelStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"
    LIMITED = "LIMITED"  # set by the panel: traffic limit reached
    EXPIRED = "EXPIRED"  # set by the panel: expiry passed


@attrs.frozen
class PanelAccess:
    """The desired state of one panel user, derived from one shop subscription.

    ``key`` is the panel's primary key (3.x numeric id, 2.x uuid, as text) once the user
    exists; ``None`` means "create it". Applying the same access twice changes nothing.
    ``fresh`` says the shop never linked a panel user to this subscription, so the user
    most likely does not exist: it is created with one call, and looked up only if the
    panel answers that the username is taken (a lost answer to an earlier create).
    """

    username: str
    expires_at: datetime
    key: str | None = None
    enabled: bool = True
    traffic_limit_bytes: int = 0
    traffic_reset: TrafficReset = TrafficReset.NO_RESET
    device_limit: int | None = None
    internal_squads: tuple[str, ...] = ()
    external_squad: str | None = None
    description: str | None = None
    tag: str | None = None
    telegram_id: int | None = None
    email: str | None = None
    fresh: bool = False


@attrs.frozen
class PanelUser:
    """A panel user as the panel reports it."""

    key: str
    username: str
    short_uuid: str
    status: PanelStatus
    expires_at: datetime
    subscription_url: str
    traffic_limit_bytes: int = 0
    traffic_reset: TrafficReset = TrafficReset.NO_RESET
    used_traffic_bytes: int = 0
    lifetime_used_traffic_bytes: int = 0
    device_limit: int | None = None
    internal_squads: tuple[str, ...] = ()
    external_squad: str | None = None
    telegram_id: int | None = None
    email: str | None = None
    description: str | None = None
    tag: str | None = None
    online_at: datetime | None = None
    first_connected_at: datetime | None = None
    created_at: datetime | None = None


@attrs.frozen
class PanelDevice:
    """A device (HWID) the panel has seen for a user."""

    hwid: str
    platform: str | None = None
    os_version: str | None = None
    device_model: str | None = None
    user_agent: str | None = None
    created_at: datetime | None = None


@attrs.frozen
class Squad:
    """An internal squad (a set of inbounds a user may use)."""

    uuid: str
    name: str
    members: int = 0


@attrs.frozen
class PanelInfo:
    """What the panel said about itself: its version and the API line the adapter speaks."""

    version: str | None
    api_line: str  # "2" or "3"


@attrs.frozen
class PanelStats:
    users_total: int
    users_by_status: dict[str, int] = attrs.field(factory=dict, hash=False)
    online_now: int = 0
    nodes_online: int = 0


@attrs.frozen
class PanelUserView:
    """The shop's cached view of the panel user that projects one subscription, refreshed
    from the panel's webhooks (so that the bot can show usage without calling the panel).

    ``last_event`` is the panel event name that last refreshed it, ``updated_at`` that
    event's own (signed) timestamp; ``devices`` counts the HWID devices the shop has seen
    added and not deleted.
    """

    subscription_id: int
    panel_key: str
    status: PanelStatus
    updated_at: datetime
    used_traffic_bytes: int = 0
    lifetime_used_traffic_bytes: int = 0
    traffic_limit_bytes: int = 0
    online_at: datetime | None = None
    first_connected_at: datetime | None = None
    devices: int = 0
    last_event: str | None = None
