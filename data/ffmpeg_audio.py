"""The fallback decoder of `data.audio.load_audio`: FFmpeg's libraries as bundled in the PyAV wheel (no system
ffmpeg needed). It reads what libsndfile refuses: AAC `.m4a` (VoxCeleb2) and FLAC streams that libFLAC >= 1.4
rejects but FFmpeg decodes (see `data.audio` for the ASVspoof enrolment files).

Samples are scaled exactly as libsndfile scales them (int16 / 32768, int32 / 2**31), so a file gives the same
float values whichever decoder read it. Damage is refused, never decoded into wrong samples: by default FFmpeg
only logs a frame whose CRC fails and outputs it anyway, so decoding runs with `err_detect=crccheck+explode`
(any error the decoder detects is raised); and FFmpeg stops quietly at a frame boundary of a cut FLAC file,
so a FLAC stream that ends before the sample count its STREAMINFO declares is refused too.
"""
from __future__ import annotations

import os

import numpy as np


class Refused(Exception):
    """FFmpeg could not give the whole audio of a file; the message is one line saying why."""


# integer sample formats -> (offset, scale) that maps them to [-1, 1) the way libsndfile does
_INT_SCALE = {"u8": (128, 2.0 ** 7), "s16": (0, 2.0 ** 15), "s32": (0, 2.0 ** 31), "s64": (0, 2.0 ** 63)}


def decode(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(samples x channels float32, sample rate) of the first audio stream of `path`, or `Refused`."""
    try:
        import av
    except ImportError:
        raise Refused("PyAV is not installed (pip install av)") from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise Refused("no audio stream")
            stream = container.streams.audio[0]
            stream.codec_context.options = {"err_detect": "crccheck+explode"}  # see the module docstring
            chunks = [_frame_array(frame) for frame in container.decode(stream)]
            declared = _declared_samples(stream)
            rate = stream.codec_context.sample_rate or stream.rate
    except av.FFmpegError as e:
        raise Refused(e.strerror or type(e).__name__) from None
    if not chunks:
        raise Refused("no audio samples decoded")
    if len({c.shape[1] for c in chunks}) > 1:
        raise Refused("the channel count changes within the stream")
    data = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    if declared is not None and len(data) < declared:
        raise Refused(f"truncated: the FLAC header declares {declared} samples, the file holds {len(data)}")
    return data, int(rate)


def _frame_array(frame) -> np.ndarray:
    """One decoded frame as (samples, channels) float32."""
    x = frame.to_ndarray()
    channels = len(frame.layout.channels)
    x = x.T if frame.format.is_planar else x.reshape(-1, channels)
    name = frame.format.name.rstrip("p")
    if name in _INT_SCALE:
        offset, scale = _INT_SCALE[name]
        wide = np.float32 if name in ("u8", "s16") else np.float64  # both exact for these widths
        return ((x.astype(wide) - offset) / scale).astype(np.float32)
    return x.astype(np.float32, copy=False)


def _declared_samples(stream) -> int | None:
    """The exact sample count a FLAC STREAMINFO states (None when unknown or another format: their durations
    may be estimates, e.g. MP3 from its bit rate)."""
    if stream.codec_context.name != "flac" or not stream.duration or stream.time_base is None:
        return None
    return int(round(stream.duration * stream.time_base * stream.codec_context.sample_rate))
