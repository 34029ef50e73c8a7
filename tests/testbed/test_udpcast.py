"""udpcast smoke test: one multicast sender on the server, two nodes in the
imaging OS receiving onto their disks; then they boot what they received."""

from __future__ import annotations

import asyncio

from imaging_testbed import images
from imaging_testbed.images import sha256_file

from .conftest import Testbed


def test_multicast_to_two_nodes_then_boot_it(testbed: Testbed) -> None:
    image = asyncio.run(images.make_image("smoke", testbed.dir / "tmp-images", 8, random_fill=True))
    for number in (1, 2):
        testbed.boot(number, imaging_os=True)
    receivers = [testbed.telnet_popen(n, "udp-receiver --nokbd --portbase 10002 --file /dev/sda", 30)
                 for n in (1, 2)]
    sender = testbed.run("udp-sender", "--file", str(image.path), "--nokbd", "--min-receivers", "2",
                         "--max-wait", "10", "--rexmit-hello-interval", "100", "--retries-until-drop", "15",
                         "--max-bitrate", "150m",  # unthrottled, two cores may starve the receivers
                         "--mcast-data-address", "234.5.6.1", "--portbase", "10002", timeout=40)
    assert sender.returncode == 0, sender.stderr
    for receiver in receivers:
        out, _ = receiver.communicate(timeout=30)
        assert receiver.returncode == 0, out
        assert "Transfer complete" in out
    for number in (1, 2):
        assert sha256_file(testbed.disk(number), limit=image.raw_size) == image.raw_sha256
    # the product restores the symlinks, then resets: the nodes boot the new image
    for number in (1, 2):
        testbed.boot(number, imaging_os=False)
        assert testbed.ssh(number, "cat /etc/imaging-image").stdout.strip() == image.identity
        assert testbed.disk(number).stat().st_size == 64 << 20  # a disk keeps its size
