"""The IoU tracker: ids that follow an object, counts that do not flicker when a frame misses
it, appear/leave events once each, and zones by box centre."""

from __future__ import annotations

from edgepipe.device.model.postprocess import Detection
from edgepipe.device.run.options import TrackerOptions
from edgepipe.device.run.tracker import APPEARED, LEFT, Tracker, zones_of


def _cat(x: int, score: float = 0.9) -> Detection:
    return Detection(0, "cat", score, (x, 10, x + 40, 50))


def _dog(x: int) -> Detection:
    return Detection(1, "dog", 0.8, (x, 10, x + 40, 50))


def test_an_object_moving_keeps_its_id_and_is_counted_from_its_second_frame():
    tracker = Tracker(TrackerOptions(min_hits=2, max_missed=2))
    first = tracker.update([_cat(0)])
    assert first.counts == {} and first.detections[0].track_id is None and not first.events
    second = tracker.update([_cat(5)])
    assert second.counts == {"cat": 1} and [e.kind for e in second.events] == [APPEARED]
    ids = {second.detections[0].track_id} | {tracker.update([_cat(x)]).detections[0].track_id for x in (10, 15)}
    assert len(ids) == 1 and None not in ids


def test_a_missed_frame_does_not_flicker_and_leaving_is_one_event():
    tracker = Tracker(TrackerOptions(min_hits=1, max_missed=2))
    assert [e.kind for e in tracker.update([_cat(0)]).events] == [APPEARED]
    for _ in range(2):  # unseen for max_missed frames: still there
        gap = tracker.update([])
        assert gap.counts == {"cat": 1} and not gap.events
    back = tracker.update([_cat(3)])
    assert back.counts == {"cat": 1} and not back.events and back.detections[0].track_id == 1
    events = [tracker.update([]).events for _ in range(3)]
    assert [[(e.kind, e.track_id) for e in frame] for frame in events] == [[], [], [(LEFT, 1)]]


def test_labels_are_tracked_apart_and_two_of_a_kind_get_two_ids():
    tracker = Tracker(TrackerOptions(min_hits=1))
    tracked = tracker.update([_cat(0), _dog(0), _cat(200)])
    assert tracked.counts == {"cat": 2, "dog": 1}
    assert len({d.track_id for d in tracked.detections}) == 3
    swapped = tracker.update([_dog(2), _cat(198), _cat(3)])  # order changes; ids follow the boxes
    assert [d.track_id for d in swapped.detections] == [tracked.detections[1].track_id,
                                                        tracked.detections[2].track_id,
                                                        tracked.detections[0].track_id]


def test_objects_are_counted_in_the_zone_holding_their_box_centre():
    zones = {"left": (0, 0, 100, 100), "right": (100, 0, 200, 100)}
    assert zones_of((80, 0, 110, 20), zones) == ("left",) and zones_of((90, 0, 130, 20), zones) == ("right",)
    tracker = Tracker(TrackerOptions(min_hits=1))
    tracked = tracker.update([_cat(0), _cat(120), _dog(130)], zones)
    assert tracked.zones == {"left": {"cat": 1}, "right": {"cat": 1, "dog": 1}}
    assert tracked.events[1].zones == ("right",)
