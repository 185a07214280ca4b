"""The limits every audio decoder applies, checked and worded in one place.

A decoded clip costs ``seconds x sample rate x channels`` samples, and compressed formats
say nothing about that in their size: each decoder checks the header's layout and length
before decoding, then the decoded samples again (a header may lie or say nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import InvalidInput, PayloadTooLarge
from service.settings import MAX_AUDIO_CHANNELS, MAX_AUDIO_SAMPLE_RATE

FIELD = "audio"


@dataclass(frozen=True)
class AudioBounds:
    """``limits.max_audio_*`` as the decoders need them."""

    max_seconds: float
    max_channels: int = MAX_AUDIO_CHANNELS
    max_sample_rate: int = MAX_AUDIO_SAMPLE_RATE
    # frames x channels: each limit above may be fine alone while their product is not
    # (8 channels at 384 kHz for 30 s is 92 M samples, seconds of decoding and ~400 MB).
    max_samples: int | None = None

    def check_layout(self, channels: int, sample_rate: int) -> None:
        if sample_rate <= 0:
            raise InvalidInput("audio declares no sample rate", field=FIELD)
        if channels < 1:
            raise InvalidInput("audio declares no channels", field=FIELD)
        if channels > self.max_channels:
            raise PayloadTooLarge(
                f"audio has {channels} channels; the limit is {self.max_channels} "
                "(limits.max_audio_channels)",
                field=FIELD,
            )
        if sample_rate > self.max_sample_rate:
            raise PayloadTooLarge(
                f"audio is sampled at {sample_rate} Hz; the limit is {self.max_sample_rate} Hz "
                "(limits.max_audio_sample_rate)",
                field=FIELD,
            )

    def check_length(self, frames: int, sample_rate: int, channels: int = 1) -> None:
        """``frames`` samples per channel at ``sample_rate`` must fit ``max_seconds``, and
        ``frames x channels`` ``max_samples``."""
        self.check_seconds(frames / sample_rate)
        self.check_samples(frames * channels, channels)

    def check_declared(self, seconds: float, sample_rate: int, channels: int) -> None:
        """A header's duration, before decoding: its seconds and the samples they make."""
        self.check_seconds(seconds)
        self.check_samples(int(seconds * sample_rate) * channels, channels)

    def check_samples(self, samples: int, channels: int) -> None:
        if self.max_samples is not None and samples > self.max_samples:
            raise PayloadTooLarge(
                f"audio decodes to at least {samples} samples ({channels} channels x sample "
                f"rate x seconds); the limit (limits.max_audio_samples) is {self.max_samples}",
                field=FIELD,
            )

    def check_seconds(self, seconds: float) -> None:
        if seconds > self.max_seconds:
            raise PayloadTooLarge(
                f"audio is {seconds:.2f} s long; the limit is {self.max_seconds:g} s "
                "(limits.max_audio_seconds)",
                field=FIELD,
            )

    def check_decoding(self, frames: int, sample_rate: int, channels: int = 1) -> None:
        """While decoding a stream of unknown length: stop as soon as it is over a limit."""
        self.check_samples(frames * channels, channels)
        if frames / sample_rate > self.max_seconds:
            raise PayloadTooLarge(
                f"audio is longer than {self.max_seconds:g} s (decoding stopped at "
                f"{frames / sample_rate:.2f} s); the limit is {self.max_seconds:g} s "
                "(limits.max_audio_seconds)",
                field=FIELD,
            )
