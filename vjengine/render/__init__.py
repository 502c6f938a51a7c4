"""GPU rendering: a headless or windowed moderngl context, banks in texture arrays, the blend and
effect passes, the glfw window with its HUD, ``vj still`` and ``vj monitors``.

Import the submodules directly (``vjengine.render.renderer``, ``vjengine.render.window``); this package
imports nothing heavy so that ``import vjengine.render`` stays cheap.
"""
