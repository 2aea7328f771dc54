"""`run --mqtt` when the broker is not what the user believes (issue 21): out of reach at start,
mqtts:// to a plain broker, a CA file that is no certificate, a prefix that is not a topic; and
Home Assistant ids that never collide or repeat themselves."""

from __future__ import annotations

import argparse
import io
import threading
import time

import pytest

from edgepipe.core.errors import UserError
from edgepipe.device.run.sink import RunInfo
from edgepipe.device.sinks.endpoints import mqtt_url
from edgepipe.device.sinks.http import HttpSink, ServeOptions
from edgepipe.device.sinks.mqtt import MqttOptions, MqttSink, discovery_messages, node_id

from mqtt_broker import Mosquitto, free_port

LABELS = ("circle", "square")


def _run_info(**fields) -> RunInfo:
    return RunInfo("test", None, "bundle/model.tflite", "cpu", "litert", 1, LABELS, lambda reason, code: None,
                   **fields)


def _wait_until_down(sink: MqttSink, log: io.StringIO) -> dict:
    """The sink's health once it has said why it cannot publish (paho's thread says it)."""
    said = threading.Event()
    for _ in range(400):  # at most 20 s
        if "retrying" in log.getvalue() or said.wait(0.05):
            break
    return sink.problems()


@pytest.mark.parametrize("tls", [False, True])
def test_an_unreachable_broker_or_tls_to_a_plain_one_is_said_once_and_shown(tmp_path, tls):
    if tls:
        broker = Mosquitto(tmp_path).start()  # plain MQTT: the TLS handshake fails
        port = broker.port
    else:
        broker, port = None, free_port()  # nothing listens
    log = io.StringIO()
    sink = MqttSink(MqttOptions(mqtt_url(f"mqtt{'s' if tls else ''}://127.0.0.1:{port}/cams/door")), log)
    sink.start(_run_info())
    try:
        health = _wait_until_down(sink, log)
        assert health["mqtt"]["connected"] is False and "cannot reach broker" in health["mqtt"]["problem"]
        fields = sink.summary_fields()["mqtt"]
        assert fields["connected"] is False and "cannot reach broker" in fields["problem"]
        assert sink._client is not None and sink._client._thread.is_alive()  # still retrying
        web = HttpSink(ServeOptions(port=0), io.StringIO())
        web.run = _run_info(outputs_health=sink.problems)
        web.latest_at = time.monotonic()
        fresh, detail = web.health()  # what /healthz answers
        web.server.server_close()
        assert fresh and detail["status"] == "degraded" and detail["outputs"]["mqtt"]["connected"] is False
    finally:
        sink.close({})
        if broker:
            broker.stop()
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and ("TLS port" in lines[0]) == tls, lines


def test_a_ca_file_that_is_no_certificate_is_one_line(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    with pytest.raises(UserError, match="is not a PEM certificate file"):
        MqttSink(MqttOptions(mqtt_url("mqtts://127.0.0.1/x"), ca_file=ca), io.StringIO())


@pytest.mark.parametrize("prefix", ["x" * 70_000, "cams/\udcff", "cams/\x1b[2Jdoor"])
def test_a_prefix_that_is_no_sane_topic_is_refused(prefix):
    with pytest.raises(argparse.ArgumentTypeError, match="topic prefix"):
        mqtt_url(f"mqtt://broker/{prefix}")


def test_home_assistant_ids_never_collide_nor_repeat_edgepipe():
    assert node_id("cams/door.1") != node_id("cams/door_1")
    ids = set()
    for prefix in ("cams/door.1", "cams/door_1", "cams/door-1", "cams/door 1"):
        for _, config in discovery_messages(prefix, _run_info(regions=("gate",))):
            ids.add(config["unique_id"])
    assert len(ids) == 8
    (_, camera), _ = discovery_messages("edgepipe/cam1", _run_info(regions=("gate",)))
    assert camera["unique_id"].startswith("edgepipe_cam1_") and camera["unique_id"].count("edgepipe") == 1
