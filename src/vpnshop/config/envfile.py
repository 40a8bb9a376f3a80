"""``.env`` files, read by python-dotenv: the rules Docker Compose, direnv users and most
Python projects already know (``export``, quotes, inline ``# comments``).

Without interpolation: a secret containing ``${...}`` is taken as written.
"""

from __future__ import annotations

import io
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from vpnshop.config.reader import ConfigError


def read_env_file(path: Path, *, required: bool = False) -> dict[str, str]:
    """The file's ``KEY=value`` pairs. A missing file is ``{}`` unless *required*; a file
    that cannot be read or decoded, or a line that is not ``KEY=value``, is a
    ConfigError naming the file (and line)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        if required:
            raise ConfigError([(f"--env-file {path}", "no such file")]) from None
        return {}
    except UnicodeDecodeError as e:
        raise ConfigError(
            [(str(path), f"is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8")]
        ) from None
    except OSError as e:
        raise ConfigError([(str(path), f"cannot be read: {e.strerror or e}")]) from None
    bad = [b.original.line for b in parse_stream(io.StringIO(text)) if b.error]
    if bad:
        raise ConfigError([(f"{path}:{line}", "not a KEY=value line") for line in bad])
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {key: value for key, value in values.items() if value is not None}
