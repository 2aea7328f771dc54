"""Every parser of outside input, as a property (issue 21): whatever it is given, it returns a
valid result or raises one UserError (argparse's ArgumentTypeError for flags), never another
exception. Bounded to a few seconds each; Hypothesis looks for the input nobody thought of.

Covered: bundle.json (manifest, input spec, unknown rule), the golden set, --roi, --mqtt,
--serve, a collected frame's sidecar (both sides: the device's budget and the workstation's
label folder) and the device's collect listing."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgepipe.core.errors import UserError
from edgepipe.deploy.agent import protocol
from edgepipe.deploy.collect import MAX_BYTES, NAME_MAX, label_folder, parse_listing
from edgepipe.device.model.bundle import Bundle, BundleError, check_manifest, features_dim, input_spec_of
from edgepipe.device.model.golden import read_golden
from edgepipe.device.model.preprocess import InputSpec
from edgepipe.device.model.unknown import rule_from_manifest
from edgepipe.device.run.regions import parse_region
from edgepipe.device.sinks.collect import is_our_pair
from edgepipe.device.sinks.endpoints import mqtt_url, serve_address

BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**320)
           | st.floats() | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=4), max_leaves=12)
GOOD_INPUT = InputSpec(224, 224).to_json()
GOOD_MANIFEST = {"schema_version": 1, "task": "classify", "labels_file": "labels.txt", "num_labels": 2,
                 "input": GOOD_INPUT, "output": {}, "models": {"cpu": "model.tflite"},
                 "files": {"labels.txt": "0" * 64, "model.tflite": "1" * 64}}
WHERE = Path("bundle/bundle.json")


def _mutated(base: dict, path_keys: list[str], value: object) -> dict:
    """`base` with the field at `path_keys` (as deep as it goes) replaced by `value`."""
    copy = json.loads(json.dumps(base))
    node = copy
    for key in path_keys[:-1]:
        if not isinstance(node.get(key), dict):
            break
        node = node[key]
    node[path_keys[-1]] = value
    return copy


FIELD_PATHS = st.sampled_from([[k] for k in GOOD_MANIFEST] + [["input", k] for k in GOOD_INPUT]
                              + [["unknown"], ["unknown", "score"], ["unknown", "threshold"], ["files", "x"],
                                 ["output", "features_dim"], ["unknown", "temperature"]])


def _no_member(name: str) -> bytes:
    raise BundleError(f"{name} is not in this test's bundle")


def _read_manifest_like_load_bundle(manifest: object) -> None:
    check_manifest(manifest, WHERE)
    input_spec_of(manifest, WHERE)
    rule_from_manifest(manifest, ["a", "b"], str(WHERE), _no_member, features_dim(manifest, WHERE.parent))


@BOUNDED
@given(FIELD_PATHS, JSON)
def test_any_manifest_field_value_is_read_or_one_user_error(path_keys, value):
    try:
        _read_manifest_like_load_bundle(_mutated(GOOD_MANIFEST, path_keys, value))
    except UserError:
        pass


@BOUNDED
@given(JSON)
def test_any_manifest_document_is_read_or_one_user_error(document):
    try:
        _read_manifest_like_load_bundle(document)
    except UserError:
        pass


@BOUNDED
@given(st.dictionaries(st.sampled_from(sorted(GOOD_INPUT)), JSON, max_size=4))
def test_an_accepted_input_spec_is_finite_and_in_range(changes):
    try:
        spec = input_spec_of(dict(GOOD_MANIFEST, input={**GOOD_INPUT, **changes}), WHERE)
    except UserError:
        return
    assert 1 <= spec.height <= 8192 and 1 <= spec.width <= 8192 and spec.std > 0
    assert all(abs(v) <= 65535 for v in (spec.mean, spec.std, spec.scale))


@BOUNDED
@given(JSON)
def test_any_golden_block_is_read_or_one_user_error(golden):
    root = Path(tempfile.gettempdir()) / "edgepipe-no-such-bundle"
    bundle = Bundle(root, dict(GOOD_MANIFEST, golden=golden), ["a", "b"], InputSpec(8, 8))
    try:
        read_golden(bundle)
    except UserError:
        pass


@BOUNDED
@given(st.text(max_size=40) | st.from_regex(r"[a-z]{1,4}=[-0-9.einfa,]{0,30}", fullmatch=True))
def test_any_roi_is_a_region_inside_bounds_or_a_usage_error(text):
    try:
        region = parse_region(text)
    except argparse.ArgumentTypeError:
        return
    try:
        x, y, w, h = region.pixels(640, 480)
    except ValueError:  # a region outside this frame: the run says so
        return
    assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 640 and y + h <= 480


@BOUNDED
@given(st.text(max_size=60) | st.from_regex(r"mqtts?://[^/]{0,20}(/.{0,20})?", fullmatch=True))
def test_any_mqtt_url_is_a_target_or_a_usage_error(text):
    try:
        target = mqtt_url(text)
    except argparse.ArgumentTypeError:
        return
    assert 1 <= target.port <= 65535 and target.host and len(target.prefix.encode()) <= 512
    assert target.redacted().startswith(("mqtt://", "mqtts://"))


@BOUNDED
@given(st.text(max_size=30) | st.from_regex(r"(\[?[0-9a-f:.]{0,12}\]?:)?[0-9]{0,6}", fullmatch=True))
def test_any_serve_address_is_host_and_port_or_a_usage_error(text):
    try:
        host, port = serve_address(text)
    except argparse.ArgumentTypeError:
        return
    assert host and 0 <= port <= 65535


@BOUNDED
@given(JSON, st.text(max_size=300) | st.from_regex(r"[^/]{1,5}\n?", fullmatch=True))
def test_any_sidecar_gives_a_safe_folder_or_one_user_error(sidecar, label):
    with tempfile.TemporaryDirectory() as to:
        (Path(to) / "taken").write_text("x")
        for document in (sidecar, {"label": label}):
            try:
                folder = label_folder(json.dumps(document), Path(to))
            except UserError:
                continue
            assert folder == "unknown" or (
                "/" not in folder and not folder.startswith(".") and folder.isprintable()
                and len(folder.encode()) <= NAME_MAX and folder != "taken")


@BOUNDED
@given(st.binary(max_size=200) | JSON.map(lambda d: json.dumps(d).encode()))
def test_any_sidecar_on_the_device_is_ours_or_not_never_an_error(content):
    with tempfile.TemporaryDirectory() as root:
        stem = "20260101T000000000Z-00000001"
        (Path(root) / f"{stem}.jpg").write_bytes(b"\xff\xd8")
        (Path(root) / f"{stem}.json").write_bytes(content)
        assert is_our_pair(Path(root), stem) in (True, False)


ENTRY = st.fixed_dictionaries({}, optional={"stem": st.text(max_size=12) | st.just("20260101T000000000Z-1"),
                                           "jpg": st.just("a" * 64) | st.text(max_size=4),
                                           "json": st.just("b" * 64) | JSON,
                                           "jpg_bytes": st.integers() | JSON, "json_bytes": st.integers()})


@BOUNDED
@given(st.lists(ENTRY | JSON, max_size=8), JSON)
def test_any_listing_gives_valid_pairs_or_refused_entries(entries, answer):
    pairs, refused = parse_listing(entries)
    assert len(pairs) + len(refused) == len(entries)
    assert len({p.stem for p in pairs}) == len(pairs)
    assert all(0 <= p.size(ext) <= MAX_BYTES[ext] for p in pairs for ext in (".jpg", ".json"))
    wrong = protocol.wrong_field(answer, protocol.ANSWERS[protocol.COLLECT_LIST])
    assert wrong is None or isinstance(wrong[0], str)
