"""Keyboards, one module per feature, built from the data a handler passes in (a test
renders them without Telegram)."""
