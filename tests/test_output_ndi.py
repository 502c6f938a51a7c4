"""ndi:// with a real NDI receiver in the test process (cyndilib, the binding the sink uses): it finds
the source on loopback and gets frames whose pixels match the headless render of that coordinate."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from _osc_helpers import wait_until
from _render_util import random_bank
from _scratch import scratch_dir

# NDI finds sources by mDNS, which a container's loopback does not carry: NDI's own configuration
# file names the host to ask instead. Read once, when the runtime starts: set before the import.
_cfg = Path(scratch_dir("vj-ndi-"))
(_cfg / "ndi-config.v1.json").write_text(json.dumps({"ndi": {"networks": {"ips": "127.0.0.1"}}}))
os.environ.setdefault("NDI_CONFIG_DIR", str(_cfg))

cyndilib = pytest.importorskip("cyndilib", reason="the NDI binding is not installed: pip install 'vjengine[ndi]'")

from cyndilib.finder import Finder  # noqa: E402
from cyndilib.receiver import ReceiveFrameType, Receiver  # noqa: E402
from cyndilib.video_frame import VideoRecvFrame  # noqa: E402
from cyndilib.wrapper import RecvBandwidth, RecvColorFormat  # noqa: E402

from vjengine.output.hub import OutputHub  # noqa: E402
from vjengine.output.sinks import open_sinks  # noqa: E402
from vjengine.render.renderer import Renderer  # noqa: E402

SIZE = (320, 180)


def _find(finder: Finder, name: str, timeout_s: float) -> str | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        finder.wait_for_sources(0.5)
        for source in finder.get_source_names():
            if source.endswith(f"({name})"):
                return source
    return None


@pytest.mark.slow
def test_ndi_receiver_gets_the_rendered_pixels(ctx, tmp_path):
    bank = random_bank(tmp_path / "bank", [3, 3], width=96, height=54, smooth=True)
    coord = [0.3, 0.7]
    renderer = Renderer(ctx, bank, output_size=SIZE, fit="stretch", progress=False, raise_errors=True,
                        upload="eager")
    renderer.render(coord, None, 1 / 60)
    expected = np.frombuffer(renderer.output.read(components=4, alignment=1), np.uint8).reshape(
        SIZE[1], SIZE[0], 4)[::-1]
    name = f"vj-test-{os.getpid()}"
    [sink] = open_sinks([f"ndi://{name}?fps=30"])
    hub = OutputHub([sink]).start(ctx, SIZE)
    finder = Finder()
    finder.open()
    receiver = Receiver(color_format=RecvColorFormat.RGBX_RGBA, bandwidth=RecvBandwidth.highest)
    video = VideoRecvFrame()
    receiver.set_video_frame(video)
    got: list[np.ndarray] = []
    try:
        hub.on_frame(renderer.output)
        assert wait_until(lambda: sink.sent >= 1), sink.status()
        assert sink.status()["unwatched"] == 1  # no receiver yet: NDI was not made to compress it
        source = _find(finder, name, 15)
        assert source, f"no NDI source {name!r} found; sources: {finder.get_source_names()}"
        receiver.set_source(finder.get_source(source))
        deadline = time.monotonic() + 20
        n = 1
        while len(got) < 3 and time.monotonic() < deadline:
            renderer.render(coord, None, 1 / 60)
            hub.on_frame(renderer.output, number=n)
            n += 1
            if receiver.receive(ReceiveFrameType.recv_video, 30) & ReceiveFrameType.recv_video:
                assert video.get_resolution() == SIZE
                got.append(np.array(video).reshape(SIZE[1], SIZE[0], 4))
        assert got, f"no frames received; sink {sink.status()}"
        assert sink.status()["receivers"] >= 1 or sink.sent > 0
    finally:
        receiver.disconnect()
        finder.close()
        hub.close()
        renderer.release()
        # the NDI runtime leaves an empty NTK_SEND_<name> in TMPDIR per sender name: this test's is per run
        Path(tempfile.gettempdir(), f"NTK_SEND_{name}").unlink(missing_ok=True)
    frame = got[-1].astype(np.int16)
    diff = np.abs(frame[..., :3] - expected[..., :3].astype(np.int16))
    assert diff.mean() < 3.0, f"mean difference {diff.mean():.2f} (NDI's codec is near-lossless)"
    assert np.percentile(diff, 99) < 16
    assert np.all(np.abs(frame[..., 3] - expected[..., 3].astype(np.int16)) <= 2)  # alpha kept
