"""The HUD overlay: layout (pure) and drawing on a headless context."""

from __future__ import annotations

import numpy as np


def test_hud_draws_text_over_the_frame(ctx):
    from vjengine.render.hud import Hud

    fbo = ctx.framebuffer([ctx.texture((320, 180), 4)])
    fbo.use()
    fbo.clear(0.2, 0.4, 0.6, 1.0)
    hud = Hud(ctx)
    try:
        batch = hud.layout(fps=60.0, frame_ms=16.6, coord=[0.25, 0.5], axis_names=["warp", "hue"],
                           input_level=0.5, lines=["bank demo"], viewport=(320, 180))
        assert len(batch.array()) > 6 * 20  # a panel, text and a meter
        hud.draw(fbo, fps=60.0, frame_ms=16.6, coord=[0.25, 0.5], axis_names=["warp", "hue"],
                 input_level=0.5, lines=["bank demo"])
        img = np.frombuffer(fbo.read(components=4), np.uint8).reshape(180, 320, 4)[::-1, :, :3].astype(int)
        background = np.array([51, 102, 153])
        panel = img[10:60, 10:150]
        assert (np.abs(panel - background).sum(axis=2) > 30).mean() > 0.5  # darkened panel
        assert panel.max() >= 200  # white glyph pixels
        assert np.abs(img[150:, 250:] - background).max() <= 1  # the rest untouched
        # nothing to show: nothing drawn
        assert len(hud.layout(viewport=(320, 180)).array()) == 0
    finally:
        hud.release()
        fbo.release()
