"""The uploads every benchmark request carries, generated once at start.

- image: a handwritten 7 (sample 7 of scikit-learn's ``load_digits``, copied here so the
  benchmark does not need scikit-learn), upscaled to 64x64, dark ink on white, as a PNG;
- audio: "seven" spoken by ``espeak-ng``, 1 s of 16 kHz mono 16-bit WAV (a synthesized tone
  when espeak-ng is missing; :attr:`Uploads.audio_source` says which);
- text: "seven".
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from PIL import Image

from service.manifest import Modality

WORD = "seven"
SAMPLE_RATE = 16_000
BOUNDARY = "mmservebenchboundary7f3a9c"


@dataclass(frozen=True)
class Uploads:
    text: str
    image_png: bytes
    audio_wav: bytes
    audio_source: str

    def as_fields(self) -> dict[Modality, bytes | str]:
        """What ``extract_row`` takes: the same bytes the HTTP requests carry."""
        return {"image": self.image_png, "audio": self.audio_wav, "text": self.text}


# load_digits().images[7] (target 7): 8x8 grey levels 0..16, bright ink.
SEVEN_8X8 = (
    (0, 0, 7, 8, 13, 16, 15, 1),
    (0, 0, 7, 7, 4, 11, 12, 0),
    (0, 0, 0, 0, 8, 13, 1, 0),
    (0, 4, 8, 8, 15, 15, 6, 0),
    (0, 2, 11, 15, 15, 4, 0, 0),
    (0, 0, 0, 16, 5, 0, 0, 0),
    (0, 0, 9, 15, 1, 0, 0, 0),
    (0, 0, 13, 5, 0, 0, 0, 0),
)


def digit_png(side: int = 64) -> bytes:
    ink = np.asarray(SEVEN_8X8, dtype=np.float64) / 16.0  # (8, 8) in [0, 1]
    grey = np.uint8(np.round(255.0 * (1.0 - ink)))
    img = Image.fromarray(grey, "L").resize((side, side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _fit_one_second(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate != SAMPLE_RATE:
        samples = soxr.resample(samples, rate, SAMPLE_RATE)
    out = np.zeros(SAMPLE_RATE, dtype=np.float32)
    n = min(len(samples), SAMPLE_RATE)
    out[:n] = samples[:n]
    return out


def _espeak(word: str) -> np.ndarray | None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "word.wav"
        done = subprocess.run(
            [exe, "-w", str(path), word], capture_output=True, timeout=30, check=False
        )
        if done.returncode != 0 or not path.exists():
            return None
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return _fit_one_second(samples.mean(axis=1), int(rate))


def _tone() -> np.ndarray:
    t = np.arange(SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


def _wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def make_uploads() -> Uploads:
    spoken = _espeak(WORD)
    if spoken is None:
        audio, source = _tone(), "synthesized 440 Hz tone (espeak-ng not available)"
    else:
        audio, source = spoken, f"espeak-ng {WORD!r}"
    return Uploads(WORD, digit_png(), _wav(audio), source)


def multipart_body(uploads: Uploads) -> tuple[bytes, str]:
    """One ``multipart/form-data`` body with all three fields, and its Content-Type."""
    dash = f"--{BOUNDARY}".encode()
    parts = [
        (b'name="text"', b"", uploads.text.encode()),
        (b'name="image"; filename="digit.png"', b"Content-Type: image/png\r\n", uploads.image_png),
        (b'name="audio"; filename="digit.wav"', b"Content-Type: audio/wav\r\n", uploads.audio_wav),
    ]
    body = b"".join(
        dash
        + b"\r\nContent-Disposition: form-data; "
        + disposition
        + b"\r\n"
        + header
        + b"\r\n"
        + data
        + b"\r\n"
        for disposition, header, data in parts
    )
    body += dash + b"--\r\n"
    return body, f"multipart/form-data; boundary={BOUNDARY}"
