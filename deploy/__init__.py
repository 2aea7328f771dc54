"""Ship a bundle to a device (or a fleet) over SSH as a service, verify it,
roll back, and measure latency there."""
