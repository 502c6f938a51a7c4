"""``--out URL``: which sink, where, at what size and rate.

==========================  =====================================================  =============
URL                         sink                                                   needs
==========================  =====================================================  =============
``ndi://NAME``              an NDI source called NAME (alpha kept)                 ``vjengine[ndi]``
``syphon://NAME``           a Syphon server (macOS)                                ``vjengine[syphon]``
``spout://NAME``            a Spout sender (Windows)                               ``vjengine[spout]``
``v4l2:///dev/videoN``      a v4l2loopback webcam (Linux)                          ``vjengine[vcam]``
``obs://``                  the OBS virtual camera (Windows, macOS)                ``vjengine[vcam]``
``srt://HOST:PORT``         MPEG-TS (H.264) over SRT (caller; ``?mode=listener``)  bundled ffmpeg
``udp://HOST:PORT``         MPEG-TS (H.264) over UDP                               bundled ffmpeg
``http://HOST:PORT/``       MJPEG stream plus the operator page                    (built in)
==========================  =====================================================  =============

Every URL takes ``?size=WxH`` and ``?fps=N`` (defaults: the show's size, half of it for ``http``;
60 fps for NDI, Syphon and Spout, 30 for the others); ``http`` also ``quality=1..95`` and ``token=...``; ``srt`` also
``mode=caller|listener`` and ``latency=MS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from vjengine.errors import ConfigError
from vjengine.netaddr import is_loopback_host

SCHEMES = ("ndi", "syphon", "spout", "v4l2", "obs", "srt", "udp", "http")
DEFAULT_FPS = {"ndi": 60.0, "syphon": 60.0, "spout": 60.0}
OTHER_FPS = 30.0
_KNOWN_PARAMS = {
    "ndi": {"size", "fps"}, "syphon": {"size", "fps"}, "spout": {"size", "fps"}, "v4l2": {"size", "fps"},
    "obs": {"size", "fps"}, "srt": {"size", "fps", "mode", "latency", "bitrate"},
    "udp": {"size", "fps", "bitrate"}, "http": {"size", "fps", "quality", "token"},
}
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


@dataclass(frozen=True)
class OutSpec:
    """One parsed ``--out`` URL. ``size`` None means the show's output size."""

    url: str
    scheme: str
    name: str = ""  # ndi / syphon / spout source name
    host: str = ""
    port: int = 0
    path: str = ""  # v4l2 device
    size: tuple[int, int] | None = None
    fps: float = OTHER_FPS
    params: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The URL without secrets, for the HUD, logs and status."""
        if "token" in self.params:
            return self.url.split("?", 1)[0]
        return self.url

    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


def _bad(url: str, why: str) -> ConfigError:
    return ConfigError(f"--out {url!r}: {why}")


def parse_size_param(url: str, text: str) -> tuple[int, int]:
    m = _SIZE.match(text.strip().lower())
    if not m:
        raise _bad(url, f"size={text!r} must be WIDTHxHEIGHT, e.g. 1280x720")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise _bad(url, f"size={text!r}: width and height must be 16..8192")
    return w & ~1, h & ~1  # even sizes: the video encoders want them


def parse_out_url(url: str) -> OutSpec:
    """Parse one ``--out`` value; :class:`ConfigError` names the URL and what is wrong with it."""
    text = str(url).strip()
    if "://" not in text:
        raise _bad(url, f"not a URL; expected one of {', '.join(s + '://' for s in SCHEMES)}")
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise _bad(url, f"unknown kind {scheme + '://'!r}; expected one of {', '.join(s + '://' for s in SCHEMES)}")
    parts = urlsplit(text)
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise _bad(url, f"cannot read the query {parts.query!r} (expected key=value&...)") from None
    params = dict(pairs)
    unknown = sorted(set(params) - _KNOWN_PARAMS[scheme])
    if unknown:
        raise _bad(url, f"unknown option {unknown[0]!r} for {scheme}:// (known: {', '.join(sorted(_KNOWN_PARAMS[scheme]))})")
    size = parse_size_param(url, params["size"]) if "size" in params else None
    fps = DEFAULT_FPS.get(scheme, OTHER_FPS)
    if "fps" in params:
        try:
            fps = float(params["fps"])
        except ValueError:
            raise _bad(url, f"fps={params['fps']!r} must be a number") from None
        if not 1.0 <= fps <= 240.0:
            raise _bad(url, f"fps={params['fps']!r} must be 1..240")
    kw: dict = {"url": text, "scheme": scheme, "size": size, "fps": fps, "params": params}
    if scheme in ("ndi", "syphon", "spout"):
        name = unquote(text.split("://", 1)[1].split("?", 1)[0]).strip().strip("/")
        if not name:
            raise _bad(url, f"needs a source name, e.g. {scheme}://vjengine")
        if len(name) > 200 or any(c in name for c in "\\\n\r\t"):
            raise _bad(url, f"source name {name!r} is too long or holds a control character")
        kw["name"] = name
    elif scheme == "v4l2":
        path = unquote(parts.path)
        if parts.netloc or not re.fullmatch(r"/dev/video\d+", path):
            raise _bad(url, "expected v4l2:///dev/videoN (three slashes, then the loopback device)")
        kw["path"] = path
    elif scheme == "obs":
        if parts.netloc or parts.path.strip("/"):
            raise _bad(url, "the OBS virtual camera takes no name or path: write obs://")
    else:
        try:
            port = parts.port
        except ValueError:
            raise _bad(url, "the port must be a number 1..65535") from None
        host = parts.hostname or ""
        if scheme in ("srt", "udp"):
            if not host:
                raise _bad(url, f"needs a host, e.g. {scheme}://127.0.0.1:9000")
            if not port:
                raise _bad(url, f"needs a port, e.g. {scheme}://{host}:9000")
        if scheme == "http":
            host = host or "127.0.0.1"
            port = 8080 if port is None else port
            if parts.path not in ("", "/"):
                raise _bad(url, "the page is served at the root: write http://HOST:PORT/")
            if "quality" in params:
                try:
                    q = int(params["quality"])
                except ValueError:
                    raise _bad(url, f"quality={params['quality']!r} must be a whole number 1..95") from None
                if not 1 <= q <= 95:
                    raise _bad(url, f"quality={params['quality']!r} must be 1..95")
            if "token" in params and len(params["token"]) < 8:
                raise _bad(url, "token= must be at least 8 characters")
        if scheme == "srt" and params.get("mode", "caller") not in ("caller", "listener"):
            raise _bad(url, f"mode={params['mode']!r} must be caller or listener")
        for key in ("latency", "bitrate"):
            if key in params:
                try:
                    if float(params[key]) <= 0:
                        raise ValueError
                except ValueError:
                    raise _bad(url, f"{key}={params[key]!r} must be a positive number") from None
        kw["host"], kw["port"] = host, int(port)
    return OutSpec(**kw)
