"""Results to an MQTT broker (`run --mqtt`), where home automation reads them.

Topics under PREFIX: `state` (the current label, retained, QoS 1, on change and
every --mqtt-interval s), `attributes` (score, top-k, fps, model: retained),
`result` (the `--json` object, at most --mqtt-rate per second) and
`availability` (`online`; `offline` by the Last Will when the process dies).
Each --roi region has the same under PREFIX/NAME/. Home Assistant discovery
configs (retained) make a sensor per camera and per region appear by itself.

A detector's `state` is the number of tracked objects present (`attributes`:
per label, and the objects), `count/LABEL` the number of each label (retained;
Home Assistant gets a sensor and a binary sensor "LABEL present" from it),
PREFIX/ZONE/state the objects in each --roi zone, and `events` (QoS 1, not
retained) one message each time a tracked object appears or leaves.

The inference thread only puts results in a small queue; a worker thread
publishes them, and paho's network thread reconnects with backoff when the
broker goes away. What cannot be queued or sent is counted as dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from edgepipe import __version__
from edgepipe.core.errors import MissingExtraError, UserError

from edgepipe.device.run.results import FrameResult
from edgepipe.device.run.sink import RunInfo
from .options import MqttOptions
from .queued import QueuedSink

DISCOVERY_PREFIX = "homeassistant"
QUEUE_RESULTS = 16
PAHO_QUEUE_MESSAGES = 256  # bounds paho's own buffer of QoS 1 messages awaiting the broker
KEEPALIVE_S = 15
RECONNECT_DELAY_S = (1, 16)
CLOSE_TIMEOUT_S = 2.0


def node_id(prefix: str) -> str:
    """The prefix as a Home Assistant node id ([a-zA-Z0-9_-]), unique per camera: a readable slug
    plus a short hash of the exact prefix, so `cams/door.1` and `cams/door_1` never collide."""
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", prefix)[:48]
    return f"{slug}_{hashlib.sha256(prefix.encode('utf-8')).hexdigest()[:8]}"


def unique_id(node: str, object_id: str) -> str:
    """Home Assistant's unique id: edgepipe_ once, even when the prefix starts with edgepipe/."""
    return f"{node}_{object_id}" if node.startswith("edgepipe_") else f"edgepipe_{node}_{object_id}"


def check_ca_file(path: Path) -> None:
    """--mqtt-ca must be a readable file of PEM certificates: refused at start, not in paho's thread."""
    import ssl

    if not path.is_file():
        raise UserError(f"--mqtt-ca {path}: no such file")
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UserError(f"--mqtt-ca {path} is not a PEM certificate file ({exc.__class__.__name__}); "
                        "give the broker's CA certificate") from None


def _attributes(top: list, fps: float, model: str) -> dict[str, Any]:
    return {"score": round(top[0].score, 6) if top else None, "top": [p.to_json() for p in top],
            "fps": round(fps, 2), "model": model}


def states(prefix: str, result: FrameResult, run: RunInfo, slugs: dict[str, str]
           ) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """Topic base -> (retained state, retained attributes or None) for one result.

    A classifier: the label of the frame and of each region. A detector: the
    number of tracked objects present (attributes: per label, and the objects),
    per label under count/LABEL (every reported label, 0 when absent, so a
    sensor falls back to 0), and per zone (attributes: per label).
    """
    model = model_name(run.model)
    if result.counts is None:
        return {base: (top[0].label if top else "", _attributes(top, result.fps, model))
                for base, top in {prefix: result.top, **{f"{prefix}/{n}": t for n, t in result.regions.items()}}.items()}
    found = {prefix: (str(sum(result.counts.values())),
                      {"counts": dict(result.counts), "objects": [d.to_json() for d in result.detections],
                       "fps": round(result.fps, 2), "model": model})}
    found.update({f"{prefix}/count/{slug}": (str(result.counts.get(label, 0)), None) for label, slug in slugs.items()})
    found.update({f"{prefix}/{zone}": (str(sum(counts.values())), {"counts": dict(counts)})
                  for zone, counts in result.zones.items()})
    return found


def discovery_messages(prefix: str, run: RunInfo) -> list[tuple[str, dict[str, Any]]]:
    """Home Assistant MQTT discovery, on one device named after this host. A classifier: one sensor
    for the whole frame and one per region. A detector (as Frigate users expect): the number of
    objects, a sensor and a binary sensor "present" per label, and a sensor per zone."""
    node = node_id(prefix)
    device = {
        "identifiers": [unique_id(node, "device")],
        "name": f"edgepipe {socket.gethostname()}",
        "model": model_name(run.model),
        "manufacturer": "edgepipe",
        "sw_version": __version__,
    }
    if run.detector:
        slugs = topic_names(run.labels)
        entities = [("sensor", "objects", "Objects", prefix, True)]
        entities += [("sensor", f"{slug}_count", f"{label} count", f"{prefix}/count/{slug}", False)
                     for label, slug in slugs.items()]
        entities += [("binary_sensor", f"{slug}_present", f"{label} present", f"{prefix}/count/{slug}", False)
                     for label, slug in slugs.items()]
        entities += [("sensor", f"{name}_objects", f"{name} objects", f"{prefix}/{name}", True)
                     for name in run.regions]
    else:
        entities = [("sensor", "label", "Label", prefix, True)] + [
            ("sensor", f"{name}_label", f"{name} label", f"{prefix}/{name}", True) for name in run.regions]
    messages = []
    for component, object_id, name, base, attributes in entities:
        state_topic = base if base.startswith(f"{prefix}/count/") else f"{base}/state"
        config: dict[str, Any] = {
            "name": name,
            "unique_id": unique_id(node, object_id),
            "state_topic": state_topic,
            "availability_topic": f"{prefix}/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
            "icon": "mdi:cctv",
            "device": device,
        }
        if attributes:
            config["json_attributes_topic"] = f"{base}/attributes"
        if component == "binary_sensor":  # on while at least one is present: read from the count
            config.update(value_template="{{ 'ON' if value | int > 0 else 'OFF' }}", device_class="occupancy")
            del config["icon"]
        elif run.detector:
            config.update(state_class="measurement", unit_of_measurement="objects")
        messages.append((f"{DISCOVERY_PREFIX}/{component}/{node}/{object_id}/config", config))
    return messages


def topic_names(labels: "tuple[str, ...] | list[str]") -> dict[str, str]:
    """Each label as one topic level and Home Assistant object id ([a-z0-9_]): "traffic light" ->
    traffic_light; labels that fold to the same name get their class index appended."""
    slugs = [re.sub(r"[^a-z0-9_]+", "_", label.lower()).strip("_") or "label" for label in labels]
    return {label: slug if slugs.count(slug) == 1 else f"{slug}_{i}" for i, (label, slug) in enumerate(zip(labels, slugs))}


def model_name(model_path: str) -> str:
    """`bundle/model.tflite` -> `bundle/model.tflite`'s last two parts: the bundle names the model."""
    path = Path(model_path)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


class MqttSink(QueuedSink):
    """Publishes results under the --mqtt prefix from a worker thread (see the module docstring)."""

    idle_s = 1.0  # without new results, still announce after a reconnect and refresh the state

    def __init__(self, options: MqttOptions, log: TextIO) -> None:
        super().__init__(QUEUE_RESULTS, "edgepipe-mqtt")
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise MissingExtraError("--mqtt needs paho-mqtt: pip install 'edgepipe[device]'") from None
        if options.ca_file is not None:
            check_ca_file(options.ca_file)
        self.options, self.log, self._mqtt = options, log, mqtt
        self.prefix = options.target.prefix
        self.published = 0
        self.dropped_results = 0  # results the queue had no room for (counted by the inference thread)
        self.dropped_messages = 0  # messages the broker never got (counted by the worker)
        self._connected = threading.Event()
        self._announce = threading.Event()  # set on every (re)connect: availability, discovery, state
        self._last_state: dict[str, tuple[str, float]] = {}  # topic base -> (label, when published)
        self._last_attributes: dict[str, str] = {}
        self._last_result_at = 0.0
        self._client: Any = None
        self._latest: FrameResult | None = None  # the worker's: what a state refresh republishes
        self._run: RunInfo | None = None
        self._slugs: dict[str, str] = {}  # a detector's label -> its topic level
        self._warned_down = False
        self._problem: str | None = "not connected yet"  # why nothing is being published, for /healthz

    # -- the inference thread's side: never waits ------------------------------------------
    def emit(self, result: FrameResult) -> None:
        if not self.offer(result):
            self.dropped_results += 1

    def start(self, run: RunInfo) -> None:
        mqtt, target = self._mqtt, self.options.target
        if run.detector and any(name.lower() == "count" for name in run.regions):
            raise UserError("--roi count: a detector's per-label counts are published under PREFIX/count/; "
                            "give the zone another name")
        self._run = run
        self._slugs = topic_names(run.labels) if run.detector else {}
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.max_queued_messages_set(PAHO_QUEUE_MESSAGES)
        client.reconnect_delay_set(*RECONNECT_DELAY_S)
        client.will_set(f"{self.prefix}/availability", "offline", qos=1, retain=True)
        if target.username:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set(ca_certs=str(self.options.ca_file) if self.options.ca_file else None)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self._client = client
        client.connect_async(target.host, target.port, keepalive=KEEPALIVE_S)
        client.loop_start()
        self.start_worker()

    def summary_fields(self) -> dict[str, Any]:
        return {"mqtt": {"broker": self.options.target.redacted(), "published": self.published,
                         "dropped": self.dropped_results + self.dropped_messages,
                         "dropped_results": self.dropped_results, "connected": self._connected.is_set(),
                         "problem": self._problem}}

    def problems(self) -> dict[str, Any]:
        problem = self._problem
        return {} if self._connected.is_set() or problem is None else {
            "mqtt": {"broker": self.options.target.redacted(), "connected": False, "problem": problem}}

    def close(self, summary: dict[str, Any]) -> None:
        if self._client is None:  # never started
            return
        self.stop_worker(CLOSE_TIMEOUT_S)  # the worker publishes what is queued, then stops
        if self._connected.is_set():  # a clean stop says so at once; the Last Will covers crashes
            info = self._client.publish(f"{self.prefix}/availability", "offline", qos=1, retain=True)
            if info.rc == self._mqtt.MQTT_ERR_SUCCESS:
                info.wait_for_publish(timeout=CLOSE_TIMEOUT_S)
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho's network thread --------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._down(f"broker {self.options.target.redacted()} refused the connection: {reason_code}")
            return
        self._warned_down = False
        self._problem = None
        self._connected.set()
        self._announce.set()  # the worker notices within a second

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if reason_code.value != 0:
            self._down(f"lost broker {self.options.target.redacted()} ({reason_code})")

    def _on_connect_fail(self, client, userdata) -> None:
        """The TCP or TLS connection failed (broker down, wrong port, mqtts:// to a plain broker)."""
        tls = " (is it a TLS port? mqtts:// needs one)" if self.options.target.tls else ""
        self._down(f"cannot reach broker {self.options.target.redacted()}{tls}")

    def _down(self, problem: str) -> None:
        """Say it once until a connection succeeds (paho keeps retrying), and keep it for /healthz."""
        self._problem = problem
        if not self._warned_down:
            self._warned_down = True
            self._say(f"{problem}; retrying with backoff, results meanwhile are dropped and counted")

    # -- the worker thread ------------------------------------------------------------------
    def handle(self, item: FrameResult) -> None:
        self._latest = item
        self._publish_pending(item, fresh=True)

    def on_idle(self) -> None:
        self._publish_pending(self._latest, fresh=False)

    def on_stop(self) -> None:
        """A run shorter than the connection still leaves its state."""
        self._connected.wait(CLOSE_TIMEOUT_S)
        self._publish_pending(self._latest, fresh=False)

    def _publish_pending(self, result: FrameResult | None, fresh: bool) -> None:
        if self._announce.is_set() and self._connected.is_set():
            self._announce.clear()
            self._publish_announcement()
            self._last_state.clear()  # republish the state after a reconnect
        if result is not None:
            self._publish_result(result, fresh)

    def _publish_announcement(self) -> None:
        assert self._run is not None
        self._publish(f"{self.prefix}/availability", "online", qos=1, retain=True)
        if self.options.discovery:
            for topic, payload in discovery_messages(self.prefix, self._run):
                self._publish(topic, json.dumps(payload), qos=1, retain=True)

    def _publish_result(self, result: FrameResult, fresh: bool) -> None:
        assert self._run is not None
        now = time.monotonic()
        send_result = fresh and now - self._last_result_at >= 1.0 / self.options.rate
        for base, (state, attributes) in states(self.prefix, result, self._run, self._slugs).items():
            last = self._last_state.get(base)
            due = last is None or last[0] != state or now - last[1] >= self.options.interval
            if attributes is not None and (due or send_result):
                text = json.dumps(attributes)
                if text != self._last_attributes.get(base):
                    if self._publish(f"{base}/attributes", text, qos=0, retain=True):
                        self._last_attributes[base] = text
            if due and self._publish(base if attributes is None else f"{base}/state", state, qos=1, retain=True):
                self._last_state[base] = (state, now)
        if fresh:  # every appearance and departure, once: they are rare, and an automation waits for them
            for event in result.events:
                self._publish(f"{self.prefix}/events", json.dumps({**event.to_json(), "frame": result.index,
                                                                   "ts": round(result.ts, 6)}), qos=1)
        if send_result and self._publish(f"{self.prefix}/result", json.dumps(result.to_json()), qos=0):
            self._last_result_at = now

    def _publish(self, topic: str, payload: str, qos: int, retain: bool = False) -> bool:
        if not self._connected.is_set():
            self.dropped_messages += 1
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            self.dropped_messages += 1
            return False
        self.published += 1
        return True

    def _say(self, message: str) -> None:
        self.log.write(f"edgepipe run: mqtt: {message}\n")
        self.log.flush()
