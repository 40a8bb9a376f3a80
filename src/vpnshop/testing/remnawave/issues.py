"""Validation issues as the panel reports them: zod v4 for 3.x, zod v3 for 2.x."""

from __future__ import annotations

from typing import Any


class _Issues:
    """The issues of one request, rendered as zod v4 (3.x) or zod v3 (2.x) reports them."""

    def __init__(self, v4: bool) -> None:
        self.v4 = v4
        self.items: list[dict[str, Any]] = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def invalid_type(self, path: list[Any], expected: str, received: str) -> None:
        if self.v4:
            issue: dict[str, Any] = {"expected": expected, "code": "invalid_type"}
            if received == "NaN":
                issue["received"] = "NaN"
            issue["path"] = path
            issue["message"] = f"Invalid input: expected {expected}, received {received}"
        else:
            issue = {
                "code": "invalid_type",
                "expected": expected,
                "received": "nan" if received == "NaN" else received,
                "path": path,
                "message": "Required"
                if received == "undefined"
                else f"Expected {expected}, received {received}",
            }
        self.items.append(issue)

    def fmt(self, path: list[Any], fmt: str, pattern: str, message: str) -> None:
        if self.v4:
            self.items.append(
                {
                    "origin": "string",
                    "code": "invalid_format",
                    "format": fmt,
                    "pattern": pattern,
                    "path": path,
                    "message": message,
                }
            )
        else:
            self.items.append(
                {
                    "validation": fmt,
                    "code": "invalid_string",
                    "message": message,
                    "path": path,
                }
            )

    def small(self, path: list[Any], origin: str, minimum: int, message: str | None = None) -> None:
        if self.v4:
            default = (
                f"Too small: expected string to have >={minimum} characters"
                if origin == "string"
                else f"Too small: expected number to be >={minimum}"
            )
            self.items.append(
                {
                    "origin": origin,
                    "code": "too_small",
                    "minimum": minimum,
                    "inclusive": True,
                    "path": path,
                    "message": message or default,
                }
            )
        else:
            self.items.append(
                {
                    "code": "too_small",
                    "minimum": minimum,
                    "type": origin,
                    "inclusive": True,
                    "exact": False,
                    "message": message or f"Number must be greater than or equal to {minimum}",
                    "path": path,
                }
            )

    def big(self, path: list[Any], origin: str, maximum: int, message: str | None = None) -> None:
        if self.v4:
            default = (
                f"Too big: expected string to have <={maximum} characters"
                if origin == "string"
                else f"Too big: expected number to be <={maximum}"
            )
            self.items.append(
                {
                    "origin": origin,
                    "code": "too_big",
                    "maximum": maximum,
                    "inclusive": True,
                    "path": path,
                    "message": message or default,
                }
            )
        else:
            self.items.append(
                {
                    "code": "too_big",
                    "maximum": maximum,
                    "type": origin,
                    "inclusive": True,
                    "exact": False,
                    "message": message or f"Number must be less than or equal to {maximum}",
                    "path": path,
                }
            )

    def enum(self, path: list[Any], values: tuple[str, ...], received: Any) -> None:
        if self.v4:
            joined = "|".join(f'"{v}"' for v in values)
            self.items.append(
                {
                    "code": "invalid_value",
                    "values": list(values),
                    "path": path,
                    "message": f"Invalid option: expected one of {joined}",
                }
            )
        else:
            joined = " | ".join(f"'{v}'" for v in values)
            self.items.append(
                {
                    "received": received,
                    "code": "invalid_enum_value",
                    "options": list(values),
                    "path": path,
                    "message": f"Invalid enum value. Expected {joined}, received '{received}'",
                }
            )

    def custom(self, path: list[Any], message: str) -> None:
        self.items.append(
            {"code": "custom", "path": path, "message": message}
            if self.v4
            else {"code": "custom", "message": message, "path": path}
        )


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
