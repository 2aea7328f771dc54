"""Redaction as a property: whatever the credentials in a URL, no part of the password (or of
a lone token) survives `redact`, wherever the URL stands in a line."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgepipe.core.safetext import redact, redact_obj, safe_line

# What may stand in user information unencoded: anything but the authority's ends (/ ? # space).
USERINFO = st.text(st.characters(blacklist_characters="/?# \t\r\n\x0b\x0c", blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")),
                   min_size=1, max_size=24)
USER = st.text(st.characters(blacklist_characters="/?#@: \t\r\n", blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")),
               min_size=0, max_size=12)
HOST = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}(:[0-9]{1,5})?", fullmatch=True)
SCHEME = st.sampled_from(["rtsp", "rtsps", "http", "https", "mqtt", "mqtts", "rtmp", "srt"])
AROUND = st.sampled_from([("", ""), ("source ", " lost"), ("(", ")"), ('"', '"'), ("x=", "\n")])


@settings(max_examples=200, deadline=None)
@given(SCHEME, USER, USERINFO, HOST, st.sampled_from(["", "/stream", "/a/b?x=1", "?q", "#f"]), AROUND)
def test_no_password_survives(scheme, user, password, host, rest, around):
    secret = password
    assume(len(secret) >= 3 and secret not in f"{scheme}://{user}:***@{host}{rest}")
    line = f"{around[0]}{scheme}://{user}:{password}@{host}{rest}{around[1]}"
    shown = redact(line)
    assert secret not in shown
    assert shown == f"{around[0]}{scheme}://{user}:***@{host}{rest}{around[1]}"


@settings(max_examples=200, deadline=None)
@given(SCHEME, USERINFO, HOST)
def test_a_lone_token_is_hidden_whole(scheme, token, host):
    assume(":" not in token and len(token) >= 3 and token not in f"{scheme}://***@{host}/x")
    assert redact(f"{scheme}://{token}@{host}/x") == f"{scheme}://***@{host}/x"


def test_the_password_ends_at_the_last_at_of_the_authority_as_ffmpeg_splits_it():
    assert redact("rtsp://admin:dor-SECRET@x@cam.lan:554/s") == "rtsp://admin:***@cam.lan:554/s"
    assert redact("rtsp://cam.lan/path@not-credentials") == "rtsp://cam.lan/path@not-credentials"
    assert redact("two: rtsp://a:b@h1/x rtsp://c:d@h2/y") == "two: rtsp://a:***@h1/x rtsp://c:***@h2/y"
    assert safe_line("rtsp://u:p@ss@h/\x1b") == "rtsp://u:***@h/\\x1b"
    assert redact_obj({"s": ["mqtt://u:p@w@b:1883/t"]}) == {"s": ["mqtt://u:***@b:1883/t"]}
