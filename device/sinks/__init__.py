"""The sinks room: where results go (lines, display, recorder, stats JSON, MQTT, HTTP and
metrics, frame collection). Each sink implements run.sink's interface; slow ones share
queued.QueuedSink so none can block the loop."""
