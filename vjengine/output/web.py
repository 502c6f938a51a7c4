"""``http://HOST:PORT/``: an MJPEG stream of the show and the operator page that shows it.

Routes: ``/`` the page; ``/stream.mjpg`` multipart JPEG frames; ``/frame.jpg`` the newest frame;
``/api/status`` the show's status (preset, bank, tempo, beat, outputs) as JSON; ``POST /api/command``
with ``{"address": "/vj/preset", "args": [2]}``: the OSC address space and argument checks
(:mod:`vjengine.control.osc_space`), onto the same :class:`CommandQueue` as OSC.

It binds 127.0.0.1 unless the URL names another address; then a token (``?token=`` in the URL, or a
random one) is printed at start and every request must carry it (``?token=``, ``X-VJ-Token`` or
``Authorization: Bearer``), or gets 401 and nothing happens. JPEG encoding runs on the sink's thread;
each viewer has its own thread and skips to the newest frame when it falls behind.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from vjengine.control.commands import Command, CommandQueue
from vjengine.errors import ConfigError
from vjengine.output.page import PAGE
from vjengine.output.sink import OutFrame, Sink

log = logging.getLogger(__name__)

MAX_BODY = 4096
PAGE_KINDS = frozenset({"preset", "bank", "tap", "resync", "blackout", "intensity", "bpm", "axis",
                        "axis_release", "axis_nudge", "fx", "crossfade", "midi_learn"})


class CommandBridge:
    """JSON ``{"address", "args"}`` -> validated :class:`Command` values on ``queue`` (source "web")."""

    def __init__(self, queue: CommandQueue | None) -> None:
        from vjengine.control.osc_space import AddressSpace  # noqa: PLC0415

        self.queue = queue
        self.space = AddressSpace()
        self.accepted = 0
        self.rejected = 0

    @staticmethod
    def _tags(args: list[Any]) -> str:
        tags = []
        for a in args:
            if isinstance(a, bool):
                tags.append("T" if a else "F")
            elif isinstance(a, int):
                tags.append("i")
            elif isinstance(a, float):
                tags.append("f")
            elif isinstance(a, str):
                tags.append("s")
            elif a is None:
                tags.append("N")
            else:
                raise ValueError(f"argument {a!r} must be a number, string, true/false or null")
        return "".join(tags)

    def apply(self, body: Any) -> tuple[int, dict[str, Any]]:
        """(HTTP status, reply) for one request body (already parsed JSON)."""
        from vjengine.control.osc_space import IGNORED, ArgError, coerce_args  # noqa: PLC0415

        try:
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object {\"address\": ..., \"args\": [...]}")
            address, args = body.get("address"), body.get("args", [])
            if not isinstance(address, str) or not address.startswith("/vj/"):
                raise ValueError(f"address {address!r} must be a /vj/... OSC address")
            if any(c in address for c in "*?[]{}"):
                raise ValueError(f"address {address!r}: wildcards are for OSC, not the page")
            if not isinstance(args, list):
                args = [args]
            routes = self.space.resolve(address)
            if not routes:
                raise ValueError(f"{address} matches no declared address")
            route = routes[0]
            if route.spec.kind not in PAGE_KINDS:
                raise ValueError(f"{address} is not a command the page may send")
            value, _clamped = coerce_args(route.spec, address, self._tags(args), args)
        except (ValueError, ArgError) as exc:
            self.rejected += 1
            return 400, {"ok": False, "error": str(exc)}
        if value is IGNORED:
            return 200, {"ok": True, "ignored": True}
        cmd = Command(route.spec.kind, route.target, value, "web")
        if self.queue is None or not self.queue.put(cmd):
            self.rejected += 1
            return 503, {"ok": False, "error": "the command queue is full"}
        self.accepted += 1
        return 200, {"ok": True, "kind": cmd.kind, "target": cmd.target, "value": cmd.value}


class WebSink(Sink):
    kind = "http"

    def __init__(self, spec, *, queue: CommandQueue | None = None,
                 status_provider: Callable[[], Mapping[str, Any]] | None = None) -> None:
        super().__init__(spec)
        self.quality = int(spec.params.get("quality", 80))
        self.token = spec.params.get("token") or (None if spec.is_loopback() else secrets.token_urlsafe(18))
        self.bridge = CommandBridge(queue)
        self.status_provider = status_provider
        self.unauthorized = 0
        self.viewers = 0
        self.viewer_skips = 0
        self._jpeg: bytes | None = None
        self._raw: OutFrame | None = None
        self._jpeg_seq = 0
        self._jpeg_cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._serve_thread: threading.Thread | None = None

    # --- set-up ---------------------------------------------------------------------------------

    def check(self) -> None:
        try:
            import PIL.Image  # noqa: F401, PLC0415
        except ImportError as exc:
            raise ConfigError("http:// needs Pillow for JPEG: pip install pillow") from exc
        if self._server is None:
            self._bind()

    def _bind(self) -> None:
        host, port = self.spec.host, self.spec.port
        handler = type("Handler", (_Handler,), {"sink": self})
        server_cls = ThreadingHTTPServer
        if ":" in host:
            server_cls = type("Server6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        try:
            self._server = server_cls((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"--out {self.spec.label!r}: cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]

    @property
    def page_url(self) -> str:
        host = self.spec.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self, size: tuple[int, int]) -> Sink:
        if self.size is None:  # a preview for a phone or a second screen: half the show's size
            self.size = (max(16, int(size[0]) // 2) & ~1, max(16, int(size[1]) // 2) & ~1)
        self.check()
        self._serve_thread = threading.Thread(target=self._serve, args=(self._server,),
                                              name="vj-out-http", daemon=True)
        self._serve_thread.start()
        if self.token:
            log.warning("operator page (token required, share it only with the crew): %s", self.page_url)
        else:
            log.info("operator page: %s", self.page_url)
        return super().start(size)

    @staticmethod
    def _serve(server: ThreadingHTTPServer) -> None:
        from vjengine.priority import lower_this_thread  # noqa: PLC0415

        lower_this_thread()  # below the render thread (started from it); viewer threads inherit it
        server.serve_forever(poll_interval=0.2)

    def stop(self, timeout_s: float = 3.0) -> None:
        super().stop(timeout_s)
        with self._jpeg_cond:
            self._jpeg_cond.notify_all()
        if self._server is not None:
            if self._serve_thread is not None:  # shutdown() waits for serve_forever: only if it runs
                self._server.shutdown()
                self._serve_thread = None
            self._server.server_close()
            self._server = None

    # --- frames ---------------------------------------------------------------------------------

    def encode(self, frame: OutFrame) -> bytes:
        from PIL import Image  # noqa: PLC0415

        w, h = frame.size  # RGBA bottom row first -> RGB top row first, in one pass inside Pillow
        img = Image.frombuffer("RGB", (w, h), frame.bottom_up, "raw", "RGBX", 0, -1)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=self.quality)
        return buf.getvalue()

    def send(self, frame: OutFrame) -> None:
        self._raw = frame
        if self.viewers == 0:  # nobody watches the stream: encode only when /frame.jpg asks
            return
        jpeg = self.encode(frame)
        with self._jpeg_cond:
            self._jpeg = jpeg
            self._jpeg_seq = frame.number
            self._jpeg_cond.notify_all()

    def still(self) -> bytes | None:
        """The newest frame as a JPEG (encoded on the asking thread when no stream keeps it fresh)."""
        raw = self._raw
        with self._jpeg_cond:
            if self._jpeg is not None and (raw is None or self._jpeg_seq >= raw.number):
                return self._jpeg
        return None if raw is None else self.encode(raw)

    def wait_jpeg(self, after_seq: int, timeout_s: float) -> tuple[bytes | None, int]:
        with self._jpeg_cond:
            if self._jpeg_seq <= after_seq and not self.stopping:
                self._jpeg_cond.wait(timeout_s)
            return self._jpeg, self._jpeg_seq

    @contextmanager
    def viewing(self) -> Iterator[None]:
        """Count one stream viewer while the block runs (viewer threads count under the frame lock)."""
        with self._jpeg_cond:
            self.viewers += 1
        try:
            yield
        finally:
            with self._jpeg_cond:
                self.viewers -= 1

    def status(self) -> dict[str, Any]:
        out = super().status()
        out.update(viewers=self.viewers, viewer_skips=self.viewer_skips, unauthorized=self.unauthorized,
                   commands=self.bridge.accepted, refused=self.bridge.rejected, token=bool(self.token))
        return out

    def hud_line(self) -> str:
        return super().hud_line() + f"  viewers {self.viewers}"

    def show_status(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.status_provider is not None:
            try:
                state = dict(self.status_provider())
            except Exception as exc:  # noqa: BLE001
                state = {"error": str(exc)}
        return state


class _Handler(BaseHTTPRequestHandler):
    sink: WebSink
    server_version = "vjengine"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # noqa: D102
        log.debug("http %s " + fmt, self.client_address[0], *args)

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        token = self.sink.token
        if not token:
            return True
        given = (query.get("token") or [""])[0] or self.headers.get("X-VJ-Token", "")
        auth = self.headers.get("Authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return True
        self.sink.unauthorized += 1
        self._reply(401, {"ok": False, "error": "token required (open the URL printed at start)"})
        return False

    def _reply(self, code: int, obj: Any = None, *, body: bytes | None = None,
               ctype: str = "application/json") -> None:
        if body is None:
            body = json.dumps(obj, default=_json_default).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not self._authorized(query):
            return
        if parts.path == "/":
            self._reply(200, body=PAGE.encode(), ctype="text/html; charset=utf-8")
        elif parts.path == "/stream.mjpg":
            self._stream()
        elif parts.path == "/frame.jpg":
            jpeg = self.sink.still()
            if jpeg is None:
                self._reply(503, {"ok": False, "error": "no frame yet"})
            else:
                self._reply(200, body=jpeg, ctype="image/jpeg")
        elif parts.path == "/api/status":
            state = self.sink.show_status()
            state["page"] = {"viewers": self.sink.viewers}
            self._reply(200, state)
        else:
            self._reply(404, {"ok": False, "error": f"no page {parts.path}"})

    def do_POST(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not self._authorized(query):
            return
        if parts.path != "/api/command":
            self._reply(404, {"ok": False, "error": f"no page {parts.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._reply(400, {"ok": False, "error": f"a command body is 1..{MAX_BODY} bytes of JSON"})
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError as exc:
            self.sink.bridge.rejected += 1
            self._reply(400, {"ok": False, "error": f"not JSON: {exc}"})
            return
        code, reply = self.sink.bridge.apply(body)
        self._reply(code, reply)

    def _stream(self) -> None:
        sink = self.sink
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=vjframe")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:  # each frame is one write: send it now, not when the viewer acknowledges the last one
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        seq = -1
        try:
            with sink.viewing():
                while not sink.stopping:
                    jpeg, new_seq = sink.wait_jpeg(seq, 1.0)
                    if jpeg is None or new_seq == seq:
                        continue
                    if seq >= 0 and new_seq > seq + 1:
                        sink.viewer_skips += 1  # this viewer fell behind: it gets the newest frame next
                    seq = new_seq
                    head = (f"--vjframe\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                            f"X-VJ-Frame: {seq}\r\n\r\n").encode()
                    self.wfile.write(head + jpeg + b"\r\n")
                    self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


__all__ = ["WebSink", "CommandBridge"]
