"""A frame counter drawn into the picture, so a receiver can tell which frame it got (tests and
``benchmarks/video_out.py``): 16 bits as a row of black/white cells across the top of the image, with
the complement in the row below, big enough to survive JPEG and H.264."""

from __future__ import annotations

import numpy as np

BITS = 16
STRIP = 0.25  # the two rows take this fraction of the height


def _cells(width: int, height: int) -> tuple[int, int]:
    return width // BITS, max(2, int(height * STRIP) // 2)


def counter_image(number: int, width: int, height: int, background: int = 96) -> np.ndarray:
    """A uint8 [H, W, 3] image, top row first, carrying ``number`` (mod 2**16)."""
    img = np.full((height, width, 3), background, np.uint8)
    stamp(img, number)
    return img


def stamp(img: np.ndarray, number: int) -> None:
    """Draw ``number`` into ``img`` (uint8 [H, W, C], top row first) in place."""
    h, w = img.shape[:2]
    cw, ch = _cells(w, h)
    for bit in range(BITS):
        on = (int(number) >> (BITS - 1 - bit)) & 1
        x = bit * cw
        img[0:ch, x:x + cw] = 255 if on else 0
        img[ch:2 * ch, x:x + cw] = 0 if on else 255


def stamp_fbo(fbo, number: int) -> None:
    """Draw ``number`` into a moderngl framebuffer with scissored clears (GL rows count from the bottom)."""
    w, h = fbo.size
    cw, ch = _cells(w, h)
    for bit in range(BITS):
        on = (int(number) >> (BITS - 1 - bit)) & 1
        x = bit * cw
        top, second = (1.0, 0.0) if on else (0.0, 1.0)
        fbo.clear(top, top, top, 1.0, viewport=(x, h - ch, cw, ch))
        fbo.clear(second, second, second, 1.0, viewport=(x, h - 2 * ch, cw, ch))


def read_counter(img: np.ndarray) -> int | None:
    """The number in ``img`` (uint8 [H, W, C>=3], top row first), or None when the cells disagree."""
    h, w = img.shape[:2]
    cw, ch = _cells(w, h)
    value = 0
    for bit in range(BITS):
        x0, x1 = bit * cw + cw // 4, bit * cw + 3 * cw // 4
        a = float(img[ch // 4:3 * ch // 4, x0:x1, :3].mean())
        b = float(img[ch + ch // 4:ch + 3 * ch // 4, x0:x1, :3].mean())
        if abs(a - b) < 80:
            return None
        value = (value << 1) | int(a > b)
    return value
