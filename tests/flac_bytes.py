"""Helper of tests/test_audio.py: writes FLAC bytes by hand, so a test can build a stream that no encoder at hand
would write: 16 bits per sample declared, with frames that decode to values beyond 16 bits (the property of the
ASVspoof 2019 `enr_audio` files that libFLAC >= 1.4 refuses and FFmpeg decodes).

Mono only; every frame is one FIXED order-1 subframe (sample = previous sample + Rice-coded residual), which
carries any int32 signal whatever the declared sample size, once each frame's first sample fits.
"""
from __future__ import annotations

import numpy as np


class _Bits:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def put(self, value: int, width: int) -> None:
        if width:
            self.parts.append(format(value & ((1 << width) - 1), f"0{width}b"))

    def tobytes(self) -> bytes:
        bits = "".join(self.parts)
        bits += "0" * (-len(bits) % 8)
        return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def _crc(data: bytes, poly: int, width: int) -> int:
    top, mask, crc = 1 << (width - 1), (1 << width) - 1, 0
    for byte in data:
        crc ^= byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
    return crc


def _utf8_number(n: int) -> bytes:
    """The frame number in FLAC's UTF-8-like code."""
    if n < 0x80:
        return bytes([n])
    tail = []
    while True:
        tail.insert(0, 0x80 | (n & 0x3F))
        n >>= 6
        lead_bits = 6 - len(tail)  # payload bits left in the lead byte
        if n < (1 << lead_bits):
            return bytes([(0xFF00 >> (len(tail) + 1)) & 0xFF | n]) + bytes(tail)


def _frame(number: int, block: np.ndarray, bits_per_sample: int) -> bytes:
    header = bytes([0xFF, 0xF8, 0x70, 0x00]) + _utf8_number(number) + (len(block) - 1).to_bytes(2, "big")
    # 0x70: block size as 16 bits at the header's end, sample rate from STREAMINFO; 0x00: mono, size from STREAMINFO
    header += bytes([_crc(header, 0x07, 8)])
    bits = _Bits()
    bits.put(0b00010010, 8)  # zero pad bit, subframe type FIXED order 1, no wasted bits
    bits.put(int(block[0]), bits_per_sample)
    residual = np.diff(block.astype(np.int64))
    folded = np.where(residual >= 0, 2 * residual, -2 * residual - 1)  # Rice's zig-zag
    k = int(max(0, np.floor(np.log2(folded.mean() + 1)) if len(folded) else 0))
    wide = k > 14  # 4-bit Rice parameters stop at 14 (15 is the escape code); RICE2 has 5-bit ones
    k = min(k, 30)
    bits.put(int(wide), 2)  # residual coding method: 0 = Rice, 1 = Rice2
    bits.put(0, 4)  # partition order 0
    bits.put(k, 5 if wide else 4)
    for u in folded.tolist():
        bits.put(0, u >> k)
        bits.put(1, 1)
        bits.put(u, k)
    frame = header + bits.tobytes()
    return frame + _crc(frame, 0x8005, 16).to_bytes(2, "big")


def flac_bytes(samples: np.ndarray, sample_rate: int = 16000, bits_per_sample: int = 16, block: int = 4096) -> bytes:
    """A mono FLAC file declaring `bits_per_sample` and holding the integer `samples` exactly (MD5 left unset)."""
    samples = np.asarray(samples, dtype=np.int64)
    firsts = samples[::block]
    if np.any(firsts < -(1 << (bits_per_sample - 1))) or np.any(firsts >= 1 << (bits_per_sample - 1)):
        raise ValueError("each frame's first sample is stored verbatim and must fit the declared sample size")
    frames = [_frame(i, samples[s:s + block], bits_per_sample) for i, s in enumerate(range(0, len(samples), block))]
    info = _Bits()
    info.put(block, 16)  # minimum and maximum block size (the last block may be shorter)
    info.put(block, 16)
    info.put(min(map(len, frames)), 24)
    info.put(max(map(len, frames)), 24)
    info.put(sample_rate, 20)
    info.put(0, 3)  # channels - 1
    info.put(bits_per_sample - 1, 5)
    info.put(len(samples), 36)
    streaminfo = info.tobytes() + bytes(16)  # MD5 all zero: "not computed", so decoders skip the check
    return b"fLaC" + bytes([0x80, 0, 0, len(streaminfo)]) + streaminfo + b"".join(frames)
