"""The http:// sink: MJPEG to real clients, the command bridge, the token; a viewer that stops
reading does not hold up the show or the other viewers."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from vjengine.control.commands import CommandQueue
from vjengine.output.counter import read_counter, stamp_fbo
from vjengine.output.hub import OutputHub
from vjengine.output.sinks import open_sinks


def _post(url, body, token=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **({"X-VJ-Token": token} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _frames(stream, count):
    """Read ``count`` JPEG parts of a multipart stream: [(X-VJ-Frame, jpeg bytes)]."""
    out = []
    while len(out) < count:
        length = number = None
        while True:
            line = stream.readline().strip()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            elif line.lower().startswith(b"x-vj-frame:"):
                number = int(line.split(b":")[1])
            elif not line and length:
                break
        out.append((number, stream.read(length)))
    return out


def test_commands_go_through_the_osc_checks_onto_the_queue():
    queue = CommandQueue()
    [sink] = open_sinks(["http://127.0.0.1:0/"], queue=queue, status_provider=lambda: {"preset": "a"})
    sink.start((64, 36))
    base = f"http://127.0.0.1:{sink.port}"
    try:
        assert _post(base + "/api/command", {"address": "/vj/preset", "args": [2]})[0] == 200
        assert _post(base + "/api/command", {"address": "/vj/blackout", "args": [True]})[0] == 200
        assert _post(base + "/api/command", {"address": "/vj/tap", "args": []})[0] == 200
        assert _post(base + "/api/command", {"address": "/vj/intensity", "args": [7]})[0] == 200  # clamped
        code, reply = _post(base + "/api/command", {"address": "/vj/bpm", "args": ["fast"]})
        assert code == 400 and "number" in reply["error"]
        code, reply = _post(base + "/api/command", {"address": "/vj/status", "args": []})
        assert code == 400 and "not a command the page may send" in reply["error"]
        code, reply = _post(base + "/api/command", {"address": "/vj/nothing", "args": []})
        assert code == 400 and "matches no declared address" in reply["error"]
        with urllib.request.urlopen(base + "/api/status", timeout=60) as r:
            assert json.loads(r.read())["preset"] == "a"
    finally:
        sink.stop()
    cmds = [(c.kind, c.value, c.source) for c in queue.drain()]
    assert cmds == [("preset", 2, "web"), ("blackout", True, "web"), ("tap", None, "web"), ("intensity", 1.0, "web")]


def test_token_is_required_on_every_request_when_asked():
    queue = CommandQueue()
    token = "s3cret-token-123"
    [sink] = open_sinks([f"http://127.0.0.1:0/?token={token}"], queue=queue)
    sink.start((64, 36))
    base = f"http://127.0.0.1:{sink.port}"
    try:
        for path in ("/", "/api/status", "/stream.mjpg", "/frame.jpg"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + path, timeout=60)
            assert err.value.code == 401
        assert _post(base + "/api/command", {"address": "/vj/blackout", "args": [True]})[0] == 401
        assert _post(base + "/api/command", {"address": "/vj/blackout", "args": [True]}, "wrong-token-xx")[0] == 401
        assert queue.drain() == []  # nothing applied
        assert _post(base + "/api/command", {"address": "/vj/blackout", "args": [True]}, token)[0] == 200
        with urllib.request.urlopen(f"{base}/?token={token}", timeout=60) as r:
            assert b"vjengine operator" in r.read()
        assert sink.status()["unauthorized"] == 6
    finally:
        sink.stop()
    assert [c.kind for c in queue.drain()] == ["blackout"]


def test_lan_bind_without_token_in_url_makes_one():
    [sink] = open_sinks(["http://0.0.0.0:0/"])
    try:
        assert sink.token and len(sink.token) >= 16
        assert f"?token={sink.token}" in sink.page_url
    finally:
        sink.stop()


@pytest.mark.slow
def test_a_viewer_that_stops_reading_holds_up_nothing(ctx):
    import io

    from PIL import Image

    size = (320, 180)
    fbo = ctx.framebuffer([ctx.texture(size, 4)])
    [sink] = open_sinks(["http://127.0.0.1:0/?fps=60&size=320x180&quality=90"])
    hub = OutputHub([sink]).start(ctx, size)
    base = f"http://127.0.0.1:{sink.port}"
    stuck = socket.create_connection(("127.0.0.1", sink.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # ... and never reads a byte
    live: list[tuple[int, bytes]] = []
    done = threading.Event()

    def viewer():  # a live viewer on its own thread
        with urllib.request.urlopen(base + "/stream.mjpg", timeout=20) as stream:
            while not done.is_set():
                live.extend(_frames(stream, 1))

    n = 0
    reader = None
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (sink.viewers < 1 or (reader is None or len(live) < 60)):
            if sink.viewers >= 1 and reader is None:
                reader = threading.Thread(target=viewer, daemon=True)
                reader.start()
            fbo.clear(0.3, 0.3, 0.3, 1.0)
            stamp_fbo(fbo, n)
            hub.on_frame(fbo, number=n)  # the render thread: never waits for either viewer
            n += 1
            time.sleep(1 / 60)  # the show's frame pacing
        assert sink.viewers == 2 and len(live) >= 60, (sink.status(), len(live))
    finally:
        done.set()
        stuck.close()
        hub.close()
    numbers = [k for k, _ in live]
    assert numbers == sorted(set(numbers)) and numbers[-1] >= n - 10  # fresh frames, in order
    for number, jpeg in live[-5:]:
        assert read_counter(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))) == number
    assert sink.sent >= 60
