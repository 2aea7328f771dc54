"""Parsing of --mqtt, --serve and the serve token."""

from __future__ import annotations

import argparse

import pytest

from edgepipe.core.errors import UserError
from edgepipe.device.sinks.endpoints import mqtt_url, serve_address, serve_token


def test_mqtt_url_forms_and_password_from_environment(monkeypatch):
    target = mqtt_url("mqtt://ha:p%40ss@broker.lan/edgepipe/door/")
    assert (target.host, target.port, target.prefix, target.tls) == ("broker.lan", 1883, "edgepipe/door", False)
    assert target.password == "p@ss" and "p@ss" not in repr(target)
    assert target.redacted() == "mqtt://ha:***@broker.lan:1883/edgepipe/door"
    assert target.without_password() == "mqtt://ha@broker.lan:1883/edgepipe/door"
    assert mqtt_url("mqtts://broker:8884/x").port == 8884 and mqtt_url("mqtts://broker/x").port == 8883
    monkeypatch.setenv("EDGEPIPE_MQTT_PASSWORD", "from-env")
    assert mqtt_url("mqtt://ha@broker/x").password == "from-env"


@pytest.mark.parametrize("text", ["http://broker/x", "mqtt:///x", "mqtt://broker:99999/x", "mqtt://broker/a/#",
                                  "mqtt://broker/a//b"])
def test_mqtt_url_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError):
        mqtt_url(text)


def test_serve_address():
    assert serve_address("8080") == ("127.0.0.1", 8080)
    assert serve_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert serve_address("[::1]:9000") == ("::1", 9000)
    for bad in ("http", ":80", "host:", "70000"):
        with pytest.raises(argparse.ArgumentTypeError):
            serve_address(bad)


def test_serve_token_sources_and_checks(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEPIPE_SERVE_TOKEN", raising=False)
    assert serve_token(None, None) is None
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file\n")
    assert serve_token("ignored-when-file", token_file) == "from-the-file"
    monkeypatch.setenv("EDGEPIPE_SERVE_TOKEN", "from-the-env")
    assert serve_token(None, None) == "from-the-env"
    with pytest.raises(UserError, match="at least 8"):
        serve_token("short", None)
    token_file.write_text("\n")
    with pytest.raises(UserError, match="is empty"):
        serve_token(None, token_file)

