"""Video out: the composited show to other software (NDI, Syphon, Spout, virtual cameras, SRT/UDP,
an MJPEG page) and the operator view.

``parse_out_url`` turns ``--out URL`` into an :class:`OutSpec`; ``open_sink`` makes its
:class:`~vjengine.output.sink.Sink`; :class:`~vjengine.output.hub.OutputHub` reads the output back on
the render thread (double-buffered pixel-buffer objects) and hands each sink frames at its own size and
rate. Converting, encoding and sending happen on each sink's own thread.
"""

from vjengine.output.url import OutSpec, parse_out_url

__all__ = ["OutSpec", "parse_out_url"]
