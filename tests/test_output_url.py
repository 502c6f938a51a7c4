"""--out URL parsing: every kind, its options, and errors that name the value."""

from __future__ import annotations

import sys

import pytest

from vjengine.errors import ConfigError
from vjengine.output.sinks import open_sinks
from vjengine.output.url import parse_out_url


def test_kinds_and_defaults():
    s = parse_out_url("ndi://VJ Main")
    assert (s.scheme, s.name, s.size, s.fps) == ("ndi", "VJ Main", None, 60.0)
    s = parse_out_url("srt://10.0.0.5:9000?mode=listener&latency=80&size=1280x720&fps=25")
    assert (s.host, s.port, s.size, s.fps, s.params["mode"]) == ("10.0.0.5", 9000, (1280, 720), 25.0, "listener")
    s = parse_out_url("udp://127.0.0.1:5000")
    assert (s.scheme, s.host, s.port, s.fps) == ("udp", "127.0.0.1", 5000, 30.0)
    s = parse_out_url("http://:8080/")
    assert (s.host, s.port) == ("127.0.0.1", 8080) and s.is_loopback()
    s = parse_out_url("http://0.0.0.0:8081/?token=abcdefgh123")
    assert not s.is_loopback() and s.label == "http://0.0.0.0:8081/"
    assert parse_out_url("v4l2:///dev/video3").path == "/dev/video3"
    assert parse_out_url("obs://").scheme == "obs"
    assert parse_out_url("spout://show").name == "show"
    assert parse_out_url("ndi://x?size=641x361").size == (640, 360)  # even sizes for the encoders


@pytest.mark.parametrize("url, words", [
    ("rtmp://host/live", "unknown kind 'rtmp://'"),
    ("show.mp4", "not a URL"),
    ("ndi://", "needs a source name"),
    ("srt://127.0.0.1", "needs a port"),
    ("udp://:9000", "needs a host"),
    ("srt://h:99999", "port must be a number"),
    ("srt://h:9000?mode=rendezvous", "mode='rendezvous'"),
    ("ndi://x?size=big", "size='big'"),
    ("ndi://x?fps=0", "fps='0'"),
    ("ndi://x?colour=red", "unknown option 'colour'"),
    ("v4l2://dev/video0", "v4l2:///dev/videoN"),
    ("http://127.0.0.1:8080/page", "served at the root"),
    ("http://127.0.0.1:8080/?quality=200", "quality='200'"),
    ("http://0.0.0.0:8080/?token=short", "at least 8"),
])
def test_bad_urls_name_the_value(url, words):
    with pytest.raises(ConfigError) as err:
        parse_out_url(url)
    assert url in str(err.value) and words in str(err.value)


def test_same_output_twice_is_refused():
    with pytest.raises(ConfigError, match="the same output"):
        open_sinks(["udp://127.0.0.1:5000", "udp://127.0.0.1:5000?fps=25"])


@pytest.mark.skipif(sys.platform == "darwin", reason="Syphon exists on macOS")
def test_syphon_elsewhere_says_what_is_needed():
    with pytest.raises(ConfigError, match="Syphon is macOS only"):
        open_sinks(["syphon://show"])


@pytest.mark.skipif(sys.platform == "win32", reason="Spout exists on Windows")
def test_spout_elsewhere_says_what_is_needed():
    with pytest.raises(ConfigError, match="Spout is Windows only"):
        open_sinks(["spout://show"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="v4l2 is Linux only")
def test_missing_v4l2_device_is_a_clear_error():
    with pytest.raises(ConfigError, match="no device /dev/video97.*v4l2loopback"):
        open_sinks(["v4l2:///dev/video97"])


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the OBS camera exists there")
def test_obs_camera_on_linux_points_to_v4l2():
    with pytest.raises(ConfigError, match="v4l2:///dev/videoN"):
        open_sinks(["obs://"])



def test_cli_bad_out_exits_2(tmp_path):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "vjengine.cli", "demo", "--headless", "--duration", "0.2",
                           "--out", "ndi://x?fps=1000", "--screenshot", str(tmp_path / "x.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "fps='1000'" in proc.stderr
