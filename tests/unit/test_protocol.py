"""The guest's event channel."""

import json
import os

from harness.guest import protocol


def test_a_long_event_reaches_the_host_whole_through_a_mocked_32k_port(tmp_path, monkeypatch):
    """virtio-serial takes at most 32 KiB a write(); the port is mocked by capping os.write,
    as a real port cannot be opened outside a guest."""
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:32768])))
    nodeids = [f"tests/guest/test_hmm.py::test_case_{i}[private-repeat{i % 10}]"
               for i in range(2000)]
    channel = protocol.EventChannel.open(str(tmp_path / "events.jsonl"))
    channel.send("collected", nodeids=nodeids)
    channel.send("test-start", nodeid=nodeids[0])
    channel.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines[0]) > 3 * 32768
    assert [json.loads(line)["event"] for line in lines] == ["collected", "test-start"]
    assert json.loads(lines[0])["nodeids"] == nodeids
