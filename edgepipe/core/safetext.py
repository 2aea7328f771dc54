"""Text that is safe to show: credentials in URLs redacted, control
characters escaped.

Why here: sources (rtsp://user:password@cam/...) reach errors, retry lines,
summaries, stats files and the device's service files; labels and whatever a
(possibly compromised) device sends back reach the user's terminal, where an
ESC or BEL byte would be interpreted. Every human message goes through
`printable(redact(...))`; JSON output goes through `redact_obj` and stays JSON
(json.dumps already escapes control characters).
"""

from __future__ import annotations

import re
from typing import Any

# scheme://user:password@host or scheme://token@host. The user information is everything between
# :// and the LAST @ of the authority (which ends at the first /, ?, # or space), as FFmpeg's
# av_url_split reads it: a password may itself hold @ and :.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#]*)@(?=[^\s/?#@]*(?:[\s/?#]|$))")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _hide(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    # With a password, the user name stays, to recognise the account; a lone user-information
    # part may be a token (https://TOKEN@host), so all of it goes.
    return f"{match['scheme']}{user}:***@" if colon else f"{match['scheme']}***@"


def redact(text: str) -> str:
    """`rtsp://user:***@cam/stream` for `rtsp://user:s@cr:et@cam/stream`, `https://***@host` for `https://TOKEN@host`."""
    return _URL_CREDENTIALS.sub(_hide, text)


def redact_obj(value: Any) -> Any:
    """`redact` applied to every string in a JSON-like value."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_obj(k): redact_obj(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_obj(v) for v in value]
    return value


def has_control(text: str) -> bool:
    return bool(_CONTROL.search(text))


def printable(text: str) -> str:
    """Control characters (ESC, BEL, CR, newlines, C1) as visible escapes like \\x1b, so nothing reaches the terminal raw."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def safe_line(text: object) -> str:
    """One human line: redacted, then escaped."""
    return printable(redact(str(text)))
