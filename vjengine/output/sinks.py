"""``--out`` URLs to started-able sinks: one place that knows every kind."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from vjengine.control.commands import CommandQueue
from vjengine.output.sink import Sink
from vjengine.output.url import OutSpec, parse_out_url


def make_sink(spec: OutSpec, *, queue: CommandQueue | None = None,
              status_provider: Callable[[], Mapping[str, Any]] | None = None) -> Sink:
    """The sink for one parsed URL (not started; ``check()`` not yet run)."""
    scheme = spec.scheme
    if scheme == "ndi":
        from vjengine.output.ndi import NdiSink  # noqa: PLC0415

        return NdiSink(spec)
    if scheme in ("srt", "udp"):
        from vjengine.output.stream import TsSink  # noqa: PLC0415

        return TsSink(spec)
    if scheme == "http":
        from vjengine.output.web import WebSink  # noqa: PLC0415

        return WebSink(spec, queue=queue, status_provider=status_provider)
    if scheme in ("v4l2", "obs"):
        from vjengine.output.vcam import VcamSink  # noqa: PLC0415

        return VcamSink(spec)
    if scheme == "syphon":
        from vjengine.output.texshare import SyphonSink  # noqa: PLC0415

        return SyphonSink(spec)
    if scheme == "spout":
        from vjengine.output.texshare import SpoutSink  # noqa: PLC0415

        return SpoutSink(spec)
    raise AssertionError(scheme)


def open_sinks(urls: Iterable[str], *, queue: CommandQueue | None = None,
               status_provider: Callable[[], Mapping[str, Any]] | None = None) -> list[Sink]:
    """Parse and check every ``--out`` URL before the show starts (ConfigError: exit 2)."""
    sinks = []
    seen: dict[tuple, str] = {}
    try:
        for url in urls or ():
            spec = parse_out_url(url)
            where = (spec.scheme, spec.name, spec.host, spec.port, spec.path)
            if where in seen:
                from vjengine.errors import ConfigError  # noqa: PLC0415

                raise ConfigError(f"--out {url!r}: the same output as {seen[where]!r}")
            seen[where] = url
            sink = make_sink(spec, queue=queue, status_provider=status_provider)
            sink.check()
            sinks.append(sink)
    except BaseException:
        for sink in sinks:
            sink.stop(0.5)
        raise
    return sinks
