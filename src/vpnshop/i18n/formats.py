"""Dates and amounts as each language writes them."""

from __future__ import annotations

from datetime import datetime


def date(language: str, when: datetime) -> str:
    """A day: 31.12.2026 in Russian, 2026-12-31 in English (UTC)."""
    return when.strftime("%d.%m.%Y" if language == "ru" else "%Y-%m-%d")


def gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f}"
