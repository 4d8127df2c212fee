"""The ASVspoof 5 codec conditions C01-C11, and coded copies made with the real encoders FFmpeg has (PyAV).

ASVspoof 5's evaluation set holds, besides the uncoded utterances, copies coded under eleven conditions (CODEC
C01-C11, CODEC_Q the quality setting, CODEC_SEED the uncoded source); its train and dev sets are uncoded. The
conditions, after the database and challenge papers and the release's ASVspoof5.codec.config.csv:
wideband (16 kHz) opus, AMR-WB, Speex, Encodec, MP3, M4A (AAC) and MP3 followed by Encodec, narrowband (8 kHz)
opus, AMR-NB and Speex, and C11, a recorded device / transmission channel. The bit rates per quality below span
each codec's published range in five steps; the exact per-quality values of the release's config file were not
available to check.

A copy is encoded and decoded in memory, back at 16 kHz (narrowband ones through 8 kHz), and stored as FLAC like
every file of the corpus. Neural codecs (Encodec, C04 and C07) cannot be made here (no model weights are ever
fetched), nor C11 (a physical channel); AMR-WB and Speex are made where the installed FFmpeg has their encoders
(the PyAV wheel usually has neither). `available()` says which conditions this machine makes and why not the
others; the corpus manifest records it.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import resample_poly

SR = 16000


@dataclass(frozen=True)
class Condition:
    """One CODEC label: the FFmpeg encoder and container, the rate it runs at and the bit rate per CODEC_Q."""
    label: str
    name: str                               # as the papers name it
    encoder: str | None                     # FFmpeg encoder; None: no software encoder can make it
    container: str | None
    rate: int                               # 16000 wideband, 8000 narrowband
    bitrates: tuple[float, ...] = ()        # kbps for CODEC_Q 1, 2, ...
    why_not: str = ""                       # why it cannot be made at all (encoder None)


CONDITIONS: dict[str, Condition] = {c.label: c for c in (
    Condition("C01", "opus (wideband)", "libopus", "ogg", 16000, (6, 12, 18, 24, 30)),
    Condition("C02", "AMR-WB", "libvo_amrwbenc", "amr", 16000, (6.6, 8.85, 12.65, 15.85, 23.05)),
    Condition("C03", "Speex (wideband)", "libspeex", "ogg", 16000, (5.75, 9.8, 16.8, 23.8, 34.2)),
    Condition("C04", "Encodec", None, None, 16000,
              why_not="neural codec: needs its model weights, which the toolkit never fetches"),
    Condition("C05", "MP3", "libmp3lame", "mp3", 16000, (48, 64, 96, 128, 160)),   # MPEG-2 at 16 kHz: <= 160 kbps
    Condition("C06", "M4A (AAC)", "aac", "adts", 16000, (16, 32, 64, 96, 128)),
    Condition("C07", "MP3 + Encodec", None, None, 16000,
              why_not="its second stage is the neural Encodec, whose model weights the toolkit never fetches"),
    Condition("C08", "opus (narrowband)", "libopus", "ogg", 8000, (4, 8, 12, 16, 20)),
    Condition("C09", "AMR-NB", "libopencore_amrnb", "amr", 8000, (4.75, 5.9, 7.4, 10.2, 12.2)),
    Condition("C10", "Speex (narrowband)", "libspeex", "ogg", 8000, (3.95, 8, 11, 15, 24.6)),
    Condition("C11", "device / transmission channel", None, None, 8000,
              why_not="a recorded device or transmission channel, not a software encoder"),
)}


@lru_cache(maxsize=1)
def available() -> tuple[tuple[str, ...], dict[str, str]]:
    """(labels this machine makes, label -> why not for the others)."""
    try:
        import av
    except ImportError:
        return (), {label: "PyAV is not installed" for label in CONDITIONS}
    made, not_made = [], {}
    for label, c in CONDITIONS.items():
        if c.encoder is None:
            not_made[label] = c.why_not
            continue
        try:
            av.codec.Codec(c.encoder, "w")
        except Exception:       # UnknownCodecError: this FFmpeg build lacks the encoder
            not_made[label] = f"the installed FFmpeg (PyAV {av.__version__}) has no {c.encoder} encoder"
            continue
        made.append(label)
    return tuple(made), not_made


def code(audio: np.ndarray, label: str, quality: int) -> np.ndarray:
    """`audio` (float, 16 kHz) encoded under condition `label` at CODEC_Q `quality` (1-based) and decoded back to
    16 kHz, trimmed or zero-padded to its length. Deterministic for a given FFmpeg build."""
    import av

    c = CONDITIONS[label]
    if c.encoder is None:
        raise ValueError(f"codec condition {label} ({c.name}) cannot be made: {c.why_not}")
    x = audio if c.rate == SR else resample_poly(audio, c.rate, SR)
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).round().astype(np.int16)[None, :]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=c.container) as out:
        stream = out.add_stream(c.encoder, rate=c.rate)
        stream.bit_rate = int(c.bitrates[(quality - 1) % len(c.bitrates)] * 1000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = c.rate
        for packet in (*stream.encode(frame), *stream.encode(None)):
            out.mux(packet)
    chunks, rate = [], c.rate
    with av.open(io.BytesIO(buffer.getvalue())) as coded:
        for decoded in coded.decode(audio=0):
            a = decoded.to_ndarray()
            a = a[0] if decoded.format.is_planar else a.reshape(-1, len(decoded.layout.channels))[:, 0]
            scale = 32768.0 if a.dtype == np.int16 else 1.0
            chunks.append(a.astype(np.float32) / scale)
            rate = decoded.sample_rate
    y = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if rate != SR:
        g = np.gcd(rate, SR)
        y = resample_poly(y, SR // g, rate // g)
    out_audio = np.zeros(len(audio), np.float32)
    out_audio[:min(len(y), len(audio))] = y[:len(audio)]
    return out_audio
