"""`run --mqtt` against a real Mosquitto broker: retained state, Home Assistant
discovery, result messages, auth, TLS, the Last Will on kill -9, and a broker
that goes away and comes back while the run keeps going."""

from __future__ import annotations

import json
import os
import re

import pytest

from edgepipe.cli import main
from edgepipe.device.sinks.mqtt import node_id

from mqtt_broker import Mosquitto, Subscriber, make_test_ca
from run_process import RunProcess

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/sbin/mosquitto"),
                                reason="Debian's mosquitto is not installed (.ci/run installs it)")

# Home Assistant's MQTT discovery topic (homeassistant/components/mqtt/discovery.py) and the keys
# of its MQTT sensor schema this sink may use; `device` needs identifiers or connections.
DISCOVERY_TOPIC = re.compile(r"homeassistant/(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?"
                             r"(?P<object_id>[a-zA-Z0-9_-]+)/config")
SENSOR_KEYS = {"name", "unique_id", "state_topic", "json_attributes_topic", "availability_topic",
               "payload_available", "payload_not_available", "icon", "device", "qos", "value_template",
               "unit_of_measurement", "device_class", "state_class", "expire_after", "force_update"}
DEVICE_KEYS = {"identifiers", "connections", "name", "model", "manufacturer", "sw_version", "hw_version",
               "configuration_url", "suggested_area", "via_device"}


def assert_valid_ha_sensor(topic: str, config: dict) -> None:
    match = DISCOVERY_TOPIC.fullmatch(topic)
    assert match and match["component"] == "sensor", topic
    assert set(config) <= SENSOR_KEYS, set(config) - SENSOR_KEYS
    assert isinstance(config["state_topic"], str) and not set("#+") & set(config["state_topic"])
    assert isinstance(config["unique_id"], str) and config["unique_id"]
    device = config["device"]
    assert set(device) <= DEVICE_KEYS and isinstance(device["identifiers"], list) and device["identifiers"]
    assert all(isinstance(device[k], str) for k in ("name", "model", "manufacturer", "sw_version"))


@pytest.fixture
def broker(tmp_path):
    server = Mosquitto(tmp_path).start()
    yield server
    server.stop()


def _run(capsys, *argv):
    code = main(["run", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_state_attributes_results_and_discovery(broker, tiny_bundle, video, tmp_path, capsys):
    live = Subscriber(broker.port, ["cams/door/#", "homeassistant/#"])
    stats = tmp_path / "stats.json"
    code, out, err = _run(capsys, tiny_bundle, "--source", video.path, "--json", "--threads", "1",
                          "--mqtt", f"mqtt://127.0.0.1:{broker.port}/cams/door", "--mqtt-rate", "1000",
                          "--roi", "left=0,0,0.5,1", "--stats-json", stats)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    labels = [r["top"][0]["label"] for r in rows]
    summary = json.loads(stats.read_text())["mqtt"]
    assert summary["broker"] == f"mqtt://127.0.0.1:{broker.port}/cams/door" and summary["published"] > 0
    live.wait_for(lambda ms: any(m.topic == "cams/door/availability" and m.payload == "offline" for m in ms))
    live.close()

    states = [m.payload for m in live.on("cams/door/state")]
    changes = [label for i, label in enumerate(labels) if i == 0 or labels[i - 1] != label]
    assert states[0] == labels[0] and states[-1] == labels[-1]
    assert all(a != b for a, b in zip(states, states[1:]))  # published on change only (interval 60 s)
    if summary["dropped"] == 0:
        assert states == changes
    results = [json.loads(m.payload) for m in live.on("cams/door/result")]
    assert results and all(r in rows for r in results)  # the --json schema, regions included
    assert all("left" in r["regions"] for r in results)
    attributes = json.loads(live.on("cams/door/attributes")[-1].payload)
    assert attributes["top"] == rows[-1]["top"] and attributes["score"] == rows[-1]["top"][0]["score"]
    assert attributes["model"] == f"{tiny_bundle.name}/model.tflite"
    assert [m.payload for m in live.on("cams/door/availability")] == ["online", "offline"]

    # A newcomer (Home Assistant starting later) gets the retained state and the discovery configs.
    late = Subscriber(broker.port, ["cams/door/#", "homeassistant/#"])
    late.wait_for(lambda ms: len([m for m in ms if m.topic.startswith("homeassistant/")]) == 2
                  and any(m.topic == "cams/door/left/state" for m in ms))
    late.close()
    retained = {m.topic: m.payload for m in late.messages if m.retain}
    assert retained["cams/door/state"] == labels[-1]
    assert retained["cams/door/left/state"] == rows[-1]["regions"]["left"][0]["label"]
    assert retained["cams/door/availability"] == "offline"
    assert "cams/door/result" not in retained
    configs = {t: json.loads(p) for t, p in retained.items() if t.startswith("homeassistant/")}
    node = node_id("cams/door")  # a slug and a short hash of the exact prefix
    assert node.startswith("cams_door_") and set(configs) == {f"homeassistant/sensor/{node}/label/config",
                                                               f"homeassistant/sensor/{node}/left_label/config"}
    for topic, config in configs.items():
        assert_valid_ha_sensor(topic, config)
        assert config["availability_topic"] == "cams/door/availability"
    camera = configs[f"homeassistant/sensor/{node}/label/config"]
    region = configs[f"homeassistant/sensor/{node}/left_label/config"]
    assert camera["state_topic"] == "cams/door/state" and region["state_topic"] == "cams/door/left/state"
    assert camera["json_attributes_topic"] == "cams/door/attributes"
    assert camera["unique_id"] != region["unique_id"] and camera["device"] == region["device"]


def test_result_rate_limit_and_no_discovery(broker, tiny_bundle, video, tmp_path, capsys):
    live = Subscriber(broker.port, ["cam/#", "homeassistant/#"])
    stats = tmp_path / "stats.json"
    code, out, err = _run(capsys, tiny_bundle, "--source", video.path, "--realtime", "--json",
                          "--mqtt", f"mqtt://127.0.0.1:{broker.port}/cam", "--mqtt-rate", "2",
                          "--no-ha-discovery", "--stats-json", stats)
    assert code == 0, err
    live.wait_for(lambda ms: any(m.topic == "cam/availability" and m.payload == "offline" for m in ms))
    live.close()
    duration = json.loads(stats.read_text())["duration_s"]
    results = live.on("cam/result")
    assert 1 <= len(results) <= 1 + duration * 2
    assert not [m for m in live.messages if m.topic.startswith("homeassistant/")]


def test_password_from_environment_wrong_password_refused_and_redacted(tmp_path, tiny_bundle, video, capsys,
                                                                       monkeypatch):
    server = Mosquitto(tmp_path, users={"cam": "s3cret-pw"}).start()
    try:
        stats = tmp_path / "stats.json"
        code, _, err = _run(capsys, tiny_bundle, "--source", video.path, "--max-frames", "5",
                            "--mqtt", f"mqtt://cam:wrong-pw@127.0.0.1:{server.port}/cam", "--stats-json", stats)
        text = err + stats.read_text()
        assert code == 0 and "wrong-pw" not in text
        summary = json.loads(stats.read_text())["mqtt"]
        assert summary["published"] == 0 and summary["dropped"] > 0 and summary["connected"] is False
        assert summary["broker"] == f"mqtt://cam:***@127.0.0.1:{server.port}/cam"

        monkeypatch.setenv("EDGEPIPE_MQTT_PASSWORD", "s3cret-pw")
        code, out, err = _run(capsys, tiny_bundle, "--source", video.path, "--json",
                              "--mqtt", f"mqtt://cam@127.0.0.1:{server.port}/cam", "--stats-json", stats, "--force")
        assert code == 0 and "s3cret-pw" not in err + stats.read_text()
        last = json.loads(out.splitlines()[-1])["top"][0]["label"]
        reader = Subscriber(server.port, ["cam/state"], "cam", "s3cret-pw")
        assert reader.wait_for(lambda ms: ms)[0].payload == last
        reader.close()
    finally:
        server.stop()


def test_tls_with_a_test_ca(tmp_path, tiny_bundle, video, capsys):
    ca = make_test_ca(tmp_path)
    server = Mosquitto(tmp_path, tls=ca).start()
    try:
        code, out, err = _run(capsys, tiny_bundle, "--source", video.path, "--json",
                              "--mqtt", f"mqtts://127.0.0.1:{server.port}/tls", "--mqtt-ca", ca["ca"])
        assert code == 0, err
        reader = Subscriber(server.port, ["tls/state"], ca=ca["ca"])
        assert reader.wait_for(lambda ms: ms)[0].payload == json.loads(out.splitlines()[-1])["top"][0]["label"]
        reader.close()
    finally:
        server.stop()


def test_last_will_on_kill_9(broker, tiny_bundle, long_video):
    watcher = Subscriber(broker.port, ["kill/availability"])
    run = RunProcess(tiny_bundle, "--source", long_video, "--realtime",
                     "--mqtt", f"mqtt://127.0.0.1:{broker.port}/kill")
    try:
        watcher.wait_for(lambda ms: [m.payload for m in ms][-1:] == ["online"], timeout=60)
        run.kill()
        watcher.wait_for(lambda ms: [m.payload for m in ms][-1:] == ["offline"])
    finally:
        watcher.close()
        run.kill()


def test_broker_restart_mid_run_results_resume_and_run_never_stalls(broker, tiny_bundle, long_video, tmp_path):
    watcher = Subscriber(broker.port, ["restart/result", "restart/availability"])
    stats = tmp_path / "stats.json"
    run = RunProcess(tiny_bundle, "--source", long_video, "--realtime", "--stats-json", stats,
                     "--mqtt", f"mqtt://127.0.0.1:{broker.port}/restart", "--mqtt-rate", "20")
    try:
        watcher.wait_for(lambda ms: any(m.topic == "restart/result" for m in ms), timeout=60)
        broker.stop()
        down_at = len(run.rows)
        run.wait_rows(down_at + 15)  # 1.5 s of video classified with the broker gone
        broker.start()
        restarted_at = run.rows[-1]["frame"]
        watcher.wait_for(lambda ms: any(m.topic == "restart/result" and json.loads(m.payload)["frame"] > restarted_at
                                        for m in ms), timeout=30)
        assert run.stop() == 0
    finally:
        watcher.close()
        run.kill()
    summary = json.loads(stats.read_text())
    assert summary["mqtt"]["dropped"] > 0 and summary["mqtt"]["connected"] is True
    frames = [r["frame"] for r in run.rows]
    assert frames == sorted(frames) and summary["frames"] == len(frames)


# The keys of Home Assistant's MQTT binary sensor schema this sink may use.
BINARY_SENSOR_KEYS = SENSOR_KEYS - {"unit_of_measurement", "state_class"} | {"payload_on", "payload_off"}


def test_a_detector_publishes_counts_per_label_and_zone_events_and_discovery(broker, detect_bundle, raccoon_video,
                                                                             capsys):
    live = Subscriber(broker.port, ["yard/#", "homeassistant/#"])
    code, out, err = _run(capsys, detect_bundle, "--source", raccoon_video[0], "--json", "--accelerator", "cpu",
                          "--mqtt", f"mqtt://127.0.0.1:{broker.port}/yard", "--mqtt-rate", "1000",
                          "--roi", "gate=0,0,0.5,1", "--roi", "lawn=0.5,0,0.5,1")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    live.wait_for(lambda ms: any(m.topic == "yard/availability" and m.payload == "offline" for m in ms))
    live.close()

    # Counts follow the tracked objects; published on change (and every --mqtt-interval).
    counts = [m.payload for m in live.on("yard/count/raccoon")]
    expected = [str(r["counts"].get("raccoon", 0)) for r in rows]
    assert counts[0] == expected[0] and counts[-1] == expected[-1] and "1" in counts
    assert all(a != b for a, b in zip(counts, counts[1:]))
    totals = [m.payload for m in live.on("yard/state")]
    assert totals[-1] == str(sum(rows[-1]["counts"].values()))
    gate = [m.payload for m in live.on("yard/gate/state")]
    assert gate[-1] == str(sum(rows[-1]["zones"]["gate"].values()))
    assert json.loads(live.on("yard/gate/attributes")[-1].payload) == {"counts": rows[-1]["zones"]["gate"]}
    attributes = json.loads(live.on("yard/attributes")[-1].payload)  # a frame's, within --mqtt-rate of the last
    assert any(attributes["counts"] == r["counts"] and attributes["objects"] == r["detections"] for r in rows[-5:])

    # One event per appearance and departure, as in --json.
    events = [json.loads(m.payload) for m in live.on("yard/events")]
    in_rows = [{**e, "frame": r["frame"]} for r in rows for e in r.get("events", [])]
    assert events and [{k: e[k] for k in ("event", "id", "label", "zones", "frame")} for e in events] == \
        [{k: e[k] for k in ("event", "id", "label", "zones", "frame")} for e in in_rows]
    assert {e["event"] for e in events} <= {"appeared", "left"}

    node = node_id("yard")
    configs = {m.topic: json.loads(m.payload) for m in live.messages if m.topic.startswith("homeassistant/")}
    assert set(configs) == {f"homeassistant/sensor/{node}/objects/config", f"homeassistant/sensor/{node}/raccoon_count/config",
                            f"homeassistant/binary_sensor/{node}/raccoon_present/config",
                            f"homeassistant/sensor/{node}/gate_objects/config",
                            f"homeassistant/sensor/{node}/lawn_objects/config"}
    for topic, config in configs.items():
        if "/binary_sensor/" in topic:
            assert set(config) <= BINARY_SENSOR_KEYS, set(config) - BINARY_SENSOR_KEYS
            assert DISCOVERY_TOPIC.fullmatch(topic)["component"] == "binary_sensor"
        else:
            assert_valid_ha_sensor(topic, config)
    present = configs[f"homeassistant/binary_sensor/{node}/raccoon_present/config"]
    assert present["state_topic"] == "yard/count/raccoon" and "value | int > 0" in present["value_template"]
    assert configs[f"homeassistant/sensor/{node}/raccoon_count/config"]["state_topic"] == "yard/count/raccoon"
    assert configs[f"homeassistant/sensor/{node}/gate_objects/config"]["state_topic"] == "yard/gate/state"
