"""Frame codecs of a bank: raw uint8 pixels, or GPU block-compressed BC1 / BC7.

A block-compressed frame is stored as its GPU block data, ``uint8 [H/4, W/4, B]`` with ``B`` bytes per
4x4 block (8 for BC1, 16 for BC7), block rows top first, so it uploads to GL as-is
(``glCompressedTexSubImage3D``). Encoding uses ``etcpak`` (BC1 and BC7); decoding uses Pillow's
``bcn`` decoder (its own C code; etcpak 0.9's decoders crash on frames of 512x512 and up).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from vjengine.errors import BankError

CODECS = ("raw", "bc1", "bc7")
BLOCK_CODECS = ("bc1", "bc7")
LOW_TIER_CODEC = "bc1"
LOW_TIER_MAX_SIDE = 128


@dataclass(frozen=True)
class Codec:
    name: str
    block_bytes: int  # bytes per 4x4 block (0: raw)
    pillow_n: int     # Pillow's bcn decoder number
    gl_format: int    # the GL internal format of the block data

    @property
    def bits_per_pixel(self) -> int:
        return self.block_bytes * 8 // 16


CODEC_INFO = {
    # GL_COMPRESSED_RGB_S3TC_DXT1_EXT / GL_COMPRESSED_RGBA_BPTC_UNORM
    "bc1": Codec("bc1", 8, 1, 0x83F0),
    "bc7": Codec("bc7", 16, 7, 0x8E8C),
}


def check_codec(codec: str, where: str = "codec") -> str:
    if codec not in CODECS:
        raise BankError(f"{where}: unknown codec {codec!r} (expected one of {', '.join(CODECS)})")
    return codec


def block_shape(codec: str, width: int, height: int) -> tuple[int, int, int]:
    """The stored shape of one frame in a block codec: (H/4, W/4, bytes per block)."""
    info = CODEC_INFO[codec]
    if width % 4 or height % 4:
        raise BankError(f"a {codec} bank needs a frame size that is a multiple of 4 (4x4 blocks), "
                        f"got {width}x{height}")
    return height // 4, width // 4, info.block_bytes


def _bc7_params():
    import etcpak

    params = etcpak.BC7CompressBlockParams()
    # Modes 1 and 6 with 16 partitions: ~25% faster than every mode at the same PSNR on our frames
    # (mode 6 alone is 3.5x faster but loses ~6 dB at hard edges).
    params.m_mode_mask = (1 << 6) | (1 << 1)
    params.m_max_partitions = 16
    params.m_try_least_squares = True
    return params


def _rgba(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.uint8)
    if frame.shape[-1] == 4:
        return np.ascontiguousarray(frame)
    out = np.empty((*frame.shape[:-1], 4), np.uint8)
    out[..., :3] = frame
    out[..., 3] = 255
    return out


def encode(frame: np.ndarray, codec: str) -> np.ndarray:
    """Block-compress one frame uint8 [H, W, 3|4] into uint8 [H/4, W/4, B]."""
    import etcpak

    h, w = frame.shape[:2]
    shape = block_shape(codec, w, h)
    rgba = _rgba(frame)
    if codec == "bc1":
        data = etcpak.compress_bc1(rgba.tobytes(), w, h)
    else:
        data = etcpak.compress_bc7(rgba.tobytes(), w, h, _bc7_params())
    return np.frombuffer(data, np.uint8).reshape(shape)


def decode(blocks: np.ndarray, codec: str, width: int, height: int, channels: int = 4) -> np.ndarray:
    """Decode one frame of block data to uint8 [H, W, channels]."""
    from PIL import Image

    info = CODEC_INFO[codec]
    data = np.ascontiguousarray(blocks).tobytes()
    if len(data) != (width // 4) * (height // 4) * info.block_bytes:
        raise BankError(f"{codec} frame of {width}x{height} needs {(width // 4) * (height // 4) * info.block_bytes} "
                        f"bytes of blocks, got {len(data)}")
    img = np.asarray(Image.frombytes("RGBA", (width, height), data, "bcn", (info.pillow_n,)))
    return img[..., :channels]


def low_tier_size(width: int, height: int, max_side: int = LOW_TIER_MAX_SIDE) -> tuple[int, int]:
    """The low tier's frame size: a quarter of the frame's long side but at most ``max_side``, a
    multiple of 4, at least 4 (512x512 -> 128x128: 8 KB in BC1)."""
    scale = min(max_side / max(width, height), 0.25)
    return (max(4, int(round(width * scale / 4)) * 4), max(4, int(round(height * scale / 4)) * 4))


def make_low(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One low-tier frame: ``frame`` box-filtered to ``size`` and BC1-compressed."""
    from PIL import Image

    frame = np.asarray(frame, dtype=np.uint8)
    img = Image.fromarray(np.ascontiguousarray(frame[..., :3]), "RGB")
    small = np.asarray(img.resize(size, Image.Resampling.BOX if size[0] <= frame.shape[1] else Image.Resampling.BILINEAR))
    return encode(small, LOW_TIER_CODEC)


def crc32(data: np.ndarray) -> int:
    """CRC-32 of an array's bytes (what the checksum table holds)."""
    return zlib.crc32(memoryview(np.ascontiguousarray(data)).cast("B")) & 0xFFFFFFFF


class DecodedFrames:
    """A read-only, array-like view of a block-compressed bank's frames: indexing decodes.

    ``frames[i]`` is uint8 [H, W, C]; ``frames[a:b]`` and ``np.asarray(frames)`` decode several (the
    whole bank: mind the memory). ``shape``, ``dtype``, ``nbytes`` and ``len`` describe the decoded
    frames, as for a raw bank's memmap.
    """

    def __init__(self, blocks: np.ndarray, codec: str, width: int, height: int, channels: int) -> None:
        self.blocks = blocks
        self.codec = codec
        self.shape = (int(blocks.shape[0]), height, width, channels)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 4

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def _one(self, i: int) -> np.ndarray:
        _, h, w, c = self.shape
        return decode(self.blocks[i], self.codec, w, h, c)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            first, rest = key[0], key[1:]
            return self[first][(slice(None), *rest) if not isinstance(first, (int, np.integer)) else rest]
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if i < 0:
                i += self.shape[0]
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"frame {key} out of range 0..{self.shape[0] - 1}")
            return self._one(i)
        idx = np.arange(self.shape[0])[key]
        out = np.empty((len(idx), *self.shape[1:]), np.uint8)
        for n, i in enumerate(idx):
            out[n] = self._one(int(i))
        return out

    def __array__(self, dtype=None, copy=None):
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)

    def __iter__(self):
        for i in range(self.shape[0]):
            yield self._one(i)
