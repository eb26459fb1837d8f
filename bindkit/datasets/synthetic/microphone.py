"""The "microphone" a synthetic scene's sound is recorded with: a domain shift for audio.

``clean`` (the default) is the sound as :func:`~bindkit.datasets.synthetic.render_audio.render_audio` makes it;
the world's files and bindkit_toy were made with it. ``shifted`` is another device, for domain-adaptation
experiments (e.g. a LoRA adapter on an audio encoder, ``benchmarks/bench_lora_shift.py``):

* a **band-pass** response (zero-phase): 2nd-order high-pass at 500 Hz, 4th-order low-pass at 2.8 kHz, and a
  resonance of +12 dB around 1.5 kHz (a cheap capsule in a small housing) — large objects' fundamentals
  (200-320 Hz) lose 10-20 dB, metal's and glass's high partials mostly vanish;
* **coloured self-noise**: brown (1/f^2) rumble plus a hiss band around 2 kHz, at 12-20 dB below the signal
  (the clean world's pink room noise is 25-40 dB below);
* **gain**: a quiet preamp, peak 0.08-0.2 instead of 0.3-0.9, and a soft clip (tanh) at a fixed input level.

The scene, and every other modality of a sample, stay the same: the microphone draws from its own random
stream, so a world generated with the same seed under both microphones differs in its audio files only.
"""

from __future__ import annotations

import numpy as np

from ...errors import ArgumentError

#: Microphone names accepted by ``audio_mic=`` (``bindkit datasets synthetic --audio-mic``).
MICS: tuple[str, ...] = ("clean", "shifted")


def _response(freqs: np.ndarray) -> np.ndarray:
    """Magnitude response of the ``shifted`` microphone at ``freqs`` (Hz)."""
    f = np.maximum(freqs, 1e-3)
    high_pass = (f / 500.0) ** 2 / np.sqrt(1 + (f / 500.0) ** 4)
    low_pass = 1 / np.sqrt(1 + (f / 2800.0) ** 8)
    resonance = 1 + 3.0 * np.exp(-0.5 * (np.log2(f / 1500.0) / 0.35) ** 2)  # +12 dB, about half an octave wide
    return high_pass * low_pass * resonance


def _coloured_noise(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Brown rumble plus a hiss band around 2 kHz, peak 1."""
    m = n // 2 + 1
    f = np.fft.rfftfreq(n, 1 / rate)
    white = rng.normal(0, 1, m) + 1j * rng.normal(0, 1, m)
    brown = white / np.maximum(f, 20.0)
    hiss = white * np.exp(-0.5 * ((f - 2000.0) / 400.0) ** 2)
    spec = brown / (np.abs(brown).max() or 1.0) + 0.6 * hiss / (np.abs(hiss).max() or 1.0)
    spec[0] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.abs(out).max() or 1.0)


def apply_microphone(wave: np.ndarray, rate: int, mic: str, rng: np.random.Generator) -> np.ndarray:
    """``wave`` (float, in [-1, 1]) as recorded by microphone ``mic``; ``clean`` returns it unchanged.

    Raises:
        ArgumentError (a ValueError): an unknown microphone.
    """
    if mic not in MICS:
        raise ArgumentError(f"unknown audio microphone {mic!r}; choose among {', '.join(MICS)}")
    if mic == "clean":
        return wave
    x = np.asarray(wave, dtype=np.float64)
    n = x.size
    spec = np.fft.rfft(x) * _response(np.fft.rfftfreq(n, 1 / rate))
    y = np.fft.irfft(spec, n)
    y /= np.abs(y).max() or 1.0
    snr_db = rng.uniform(12.0, 20.0)
    y += 10 ** (-snr_db / 20) * _coloured_noise(n, rate, rng)
    y = np.tanh(1.5 * y) / np.tanh(1.5)  # the preamp's soft clip
    y *= rng.uniform(0.08, 0.2) / (np.abs(y).max() or 1.0)
    return y.astype(np.float32)
