"""Run in the guest by the project's own integration tests: one case that passes through the
real device and one whose assertion is wrong on purpose, so the host must report a failure."""

from harness.guest.hmm import MirrorDevice


def test_device_opens(variant):
    with MirrorDevice(variant.device_paths[0]) as device:
        assert device.fd >= 0


def test_deliberately_wrong_assertion(variant):
    with MirrorDevice(variant.device_paths[0]) as device:
        assert device.fd < 0, "this case exists to fail"
