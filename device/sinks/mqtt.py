"""Results to an MQTT broker (`run --mqtt`), where home automation reads them.

Topics under PREFIX: `state` (the current label, retained, QoS 1, on change and
every --mqtt-interval s), `attributes` (score, top-k, fps, model: retained),
`result` (the `--json` object, at most --mqtt-rate per second) and
`availability` (`online`; `offline` by the Last Will when the process dies).
Each --roi region has the same under PREFIX/NAME/. Home Assistant discovery
configs (retained) make a sensor per camera and per region appear by itself.

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


def discovery_messages(prefix: str, run: RunInfo) -> list[tuple[str, dict[str, Any]]]:
    """Home Assistant MQTT discovery: one sensor for the whole frame and one per region,
    on one device named after this host."""
    node = node_id(prefix)
    device = {
        "identifiers": [unique_id(node, "device")],
        "name": f"edgepipe {socket.gethostname()}",
        "model": model_name(run.model),
        "manufacturer": "edgepipe",
        "sw_version": __version__,
    }
    sensors = [("label", "Label", prefix)] + [(f"{name}_label", f"{name} label", f"{prefix}/{name}")
                                              for name in run.regions]
    messages = []
    for object_id, name, base in sensors:
        messages.append((f"{DISCOVERY_PREFIX}/sensor/{node}/{object_id}/config", {
            "name": name,
            "unique_id": unique_id(node, object_id),
            "state_topic": f"{base}/state",
            "json_attributes_topic": f"{base}/attributes",
            "availability_topic": f"{prefix}/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
            "icon": "mdi:cctv",
            "device": device,
        }))
    return messages


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
        self._warned_down = False
        self._problem: str | None = "not connected yet"  # why nothing is being published, for /healthz

    # -- the inference thread's side: never waits ------------------------------------------
    def emit(self, result: FrameResult) -> None:
        if not self.offer(result):
            self.dropped_results += 1

    def start(self, run: RunInfo) -> None:
        mqtt, target = self._mqtt, self.options.target
        self._run = run
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
        model = model_name(self._run.model)
        bases = {self.prefix: result.top, **{f"{self.prefix}/{n}": top for n, top in result.regions.items()}}
        send_result = fresh and now - self._last_result_at >= 1.0 / self.options.rate
        for base, top in bases.items():
            label = top[0].label if top else ""
            last = self._last_state.get(base)
            if last is None or last[0] != label or now - last[1] >= self.options.interval or send_result:
                attributes = json.dumps(_attributes(top, result.fps, model))
                if attributes != self._last_attributes.get(base):
                    if self._publish(f"{base}/attributes", attributes, qos=0, retain=True):
                        self._last_attributes[base] = attributes
            if last is None or last[0] != label or now - last[1] >= self.options.interval:
                if self._publish(f"{base}/state", label, qos=1, retain=True):
                    self._last_state[base] = (label, now)
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
