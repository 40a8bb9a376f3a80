"""RemnawaveSettings: validation, secrets kept out of repr, usernames."""

from __future__ import annotations

import re
from typing import Any

import pytest

from vpnshop.adapters.remnawave import RemnawaveConfigError, RemnawaveSettings
from vpnshop.domain.panel import MAX_SUBSCRIPTION_ID

USERNAME = re.compile(r"^[a-zA-Z0-9_-]{3,36}$")


def make(**kw: Any) -> RemnawaveSettings:
    values: dict[str, Any] = {"base_url": "https://panel.example.com", "token": "tok-SECRET"}
    values.update(kw)
    return RemnawaveSettings(**values)


def test_defaults() -> None:
    """Settings left unset give the auto API line, the VPNSHOP tag, the vs_{subscription_id}
    template, the /api root, and no forwarded headers over https."""
    s = make()
    assert s.api_line == "auto"
    assert s.shop_tag == "VPNSHOP"
    assert s.username_template == "vs_{subscription_id}"
    assert s.api_root == "https://panel.example.com/api"
    assert not s.sends_forwarded_headers  # https goes through the reverse proxy


def test_secrets_are_not_in_repr() -> None:
    """The X-Api-Key and the cookies never appear in the settings' repr or str."""
    s = make(x_api_key="caddy-SECRET", cookies={"session": "cookie-SECRET"})
    assert "SECRET" not in repr(s)
    assert "SECRET" not in str(s)


@pytest.mark.parametrize(
    ("url", "root", "forwarded"),
    [
        ("http://remnawave:3000", "http://remnawave:3000/api", True),
        ("http://remnawave:3000/", "http://remnawave:3000/api", True),
        ("https://panel.example.com/api", "https://panel.example.com/api", False),
        ("https://example.com/secret-path/", "https://example.com/secret-path/api", False),
    ],
)
def test_api_root_and_forwarded_headers(url: str, root: str, forwarded: bool) -> None:
    """The API root is the base URL plus /api (once), and forwarded headers are sent to a plain-http
    panel unless forced on or off."""
    s = make(base_url=url)
    assert s.api_root == root
    assert s.sends_forwarded_headers is forwarded
    assert make(base_url=url, forwarded_headers="always").sends_forwarded_headers
    assert not make(base_url=url, forwarded_headers="never").sends_forwarded_headers


@pytest.mark.parametrize(
    "kw",
    [
        {"base_url": "ftp://panel"},
        {"base_url": "panel.example.com"},
        {"token": ""},
        {"token": "  "},
        {"api_line": "1"},
        {"shop_tag": "vpnshop"},
        {"shop_tag": "VPN-SHOP"},
        {"shop_tag": "A" * 17},
        {"shop_tag": ""},
        {"timeout": 0},
        {"retry_attempts": 0},
        {"forwarded_headers": "sometimes"},
        {"username_template": "vs"},
        {"username_template": "vs.{subscription_id}"},
        {"username_template": "{subscription_id}"},  # "0" is too short
        {"username_template": "x" * 20 + "_{subscription_id}"},  # 40 chars for a BIGINT id
        {"username_template": "vs_{subscription_id}_{shop}"},
        {"username_template": "vs_{subscription_id"},
        {"username_template": "пользователь_{subscription_id}"},
        # Both ids may each reach 19 digits: 40 characters, too long to be always valid.
        {"username_template": "c{customer_id}s{subscription_id}"},
    ],
)
def test_bad_settings_are_refused(kw: dict[str, object]) -> None:
    """An unusable URL, token, API line, tag, timeout, retry count, forwarded-headers mode or
    username template raises RemnawaveConfigError at construction."""
    with pytest.raises(RemnawaveConfigError):
        make(**kw)


@pytest.mark.parametrize(
    "template",
    [
        "vs_{subscription_id}",
        "shop-a_{subscription_id}",
        "{subscription_id}_vpn",
        "u_{subscription_id}",
    ],
)
def test_usernames_are_always_valid_and_unique(template: str) -> None:
    """Every accepted template gives usernames the panel accepts and distinct ones for distinct
    subscriptions, up to the largest subscription id."""
    s = make(username_template=template)
    names = {s.username_for(i, i * 7) for i in range(0, 2000)}
    names |= {s.username_for(MAX_SUBSCRIPTION_ID - i, MAX_SUBSCRIPTION_ID) for i in range(10)}
    assert len(names) == 2010
    assert all(USERNAME.match(n) for n in names)


def test_username_for_refuses_negative_ids() -> None:
    """username_for refuses a negative subscription id with ValueError."""
    with pytest.raises(ValueError):
        make().username_for(-1)
