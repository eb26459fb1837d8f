"""The sound of a scene: impacts (or friction) of the main object, over room noise.

* **pitch follows size** — the fundamental is ~900-1300 Hz for small objects, ~450-650 Hz for medium and
  ~200-320 Hz for large ones (an octave apart);
* **timbre follows material** (the fundamental stays the size's) — metal rings long with inharmonic
  partials (a free bar's 1 : 2.76 : 5.40 : 8.93); glass rings shorter with glassy partials (1 : 2.32 : 4.25 :
  6.63); wood knocks (short decay, harmonic, a noise burst); rubber thuds (very short, mostly smoothed noise);
* **rhythm follows motion** — still: one tap; bouncing: impacts whose intervals and loudness shrink by the
  material's restitution (a rubber ball bounces longest); spinning: a steady fast rattle (12-20 Hz) with a
  slow wobble in loudness; sliding: a scrape (band-passed noise around the material's resonance) in one or
  two strokes; shaking: an irregular rattle.

Then pink room noise and sometimes mains hum; the result is peak-normalised to a random level.
"""

from __future__ import annotations

import numpy as np

from .world import RESTITUTION, Scene

#: Fundamental frequency range (Hz) per size.
PITCH: dict[str, tuple[float, float]] = {"small": (900.0, 1300.0), "medium": (450.0, 650.0),
                                         "large": (200.0, 320.0)}

#: Per material: partial ratios, their amplitudes, the decay time range (s) and the share of noise burst.
TIMBRE: dict[str, tuple[tuple[float, ...], tuple[float, ...], tuple[float, float], float]] = {
    "metal": ((1.0, 2.76, 5.40, 8.93), (1.0, 0.6, 0.4, 0.25), (0.35, 0.6), 0.05),
    "glass": ((1.0, 2.32, 4.25, 6.63), (1.0, 0.5, 0.3, 0.15), (0.12, 0.22), 0.1),
    "wood": ((1.0, 2.0, 3.9), (1.0, 0.35, 0.15), (0.03, 0.06), 0.5),
    "rubber": ((1.0, 1.5), (1.0, 0.25), (0.015, 0.03), 0.6),
}


def _impact(f0: float, material: str, rng: np.random.Generator, rate: int, max_len: int) -> np.ndarray:
    """One strike of the object: a sum of decaying partials plus a noise burst, peak 1."""
    ratios, amps, (tau_lo, tau_hi), noise_share = TIMBRE[material]
    tau = rng.uniform(tau_lo, tau_hi)
    n = min(max_len, int(rate * min(5 * tau, 1.5)) + 1)
    t = np.arange(n) / rate
    out = np.zeros(n)
    for ratio, amp in zip(ratios, amps):
        f = f0 * ratio * rng.uniform(0.985, 1.015)
        if f >= 0.45 * rate:
            continue
        out += amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t * ratio ** 0.3 / tau)
    burst = rng.normal(0, 1, n) * np.exp(-t / 0.008)
    if material == "rubber":  # a dull thud: smooth the burst (moving average over ~2 ms)
        k = max(1, rate // 500)
        burst = np.convolve(burst, np.ones(k) / k, mode="same")
    peak = np.abs(out).max() or 1.0
    out = (1 - noise_share) * out / peak + noise_share * burst / (np.abs(burst).max() or 1.0)
    ramp = min(n, max(1, rate // 1000))
    out[:ramp] *= np.linspace(0, 1, ramp, endpoint=False)
    return out / (np.abs(out).max() or 1.0)


def _events(scene: Scene, rng: np.random.Generator, seconds: float) -> list[tuple[float, float]]:
    """(time s, amplitude) of each impact."""
    m = scene.motion
    ev: list[tuple[float, float]] = []
    if m == "still":
        ev.append((rng.uniform(0.05, 0.5) * seconds, rng.uniform(0.5, 0.8)))
    elif m == "bouncing":
        e = RESTITUTION[scene.material] * rng.uniform(0.95, 1.05)
        t, gap, a = rng.uniform(0.02, 0.2), rng.uniform(0.3, 0.5), 1.0
        while t < seconds and gap > 0.015:
            ev.append((t, a))
            t, gap, a = t + gap, gap * e, a * e
    elif m == "spinning":
        hz = rng.uniform(12, 20)
        wobble, phase = rng.uniform(1.0, 3.0), rng.uniform(0, 2 * np.pi)
        t = rng.uniform(0, 1 / hz)
        while t < seconds:
            ev.append((t + rng.normal(0, 0.002), 0.35 * (1 + 0.3 * np.sin(2 * np.pi * wobble * t + phase))))
            t += 1 / hz
    elif m == "shaking":
        t = rng.uniform(0, 0.1)
        while t < seconds:
            ev.append((t, rng.uniform(0.25, 0.75)))
            t += rng.uniform(0.035, 0.11)
    return [(max(0.0, t), a) for t, a in ev]


def _band_noise(n: int, centre: float, width: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.normal(0, 1, n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spec *= np.exp(-0.5 * ((f - centre) / width) ** 2)
    out = np.fft.irfft(spec, n)
    return out / (np.abs(out).max() or 1.0)


def _scrape(scene: Scene, f0: float, rng: np.random.Generator, rate: int, n: int) -> np.ndarray:
    """Friction of a sliding object: band noise around its second partial, in one or two strokes."""
    ratios = TIMBRE[scene.material][0]
    centre = f0 * ratios[min(1, len(ratios) - 1)]
    width = centre * (0.08 if scene.material in ("metal", "glass") else 0.35)
    noise = _band_noise(n, min(centre, 0.4 * rate), width, rate, rng)
    env = np.zeros(n)
    seconds = n / rate
    strokes = int(rng.integers(1, 3))
    for k in range(strokes):
        start = (k / strokes + rng.uniform(0.0, 0.15)) * seconds
        length = rng.uniform(0.5, 0.85) * seconds / strokes
        t = np.arange(n) / rate - start
        inside = (t >= 0) & (t < length)
        env[inside] += np.sin(np.pi * t[inside] / length) ** 0.5
    return noise * env


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise, peak 1 (a random spectrum shaped in the frequency domain: one inverse FFT)."""
    m = n // 2 + 1
    spec = (rng.normal(0, 1, m) + 1j * rng.normal(0, 1, m)) / np.sqrt(np.maximum(np.arange(m), 1))
    spec[0] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.abs(out).max() or 1.0)


def render_audio(scene: Scene, rng: np.random.Generator, seconds: float = 2.0, rate: int = 16000) -> np.ndarray:
    """float32 mono waveform in [-1, 1] of ``seconds`` at ``rate`` Hz."""
    n = int(round(seconds * rate))
    f0 = rng.uniform(*PITCH[scene.size])
    wave = np.zeros(n)
    kernel = _impact(f0, scene.material, rng, rate, n)
    for t, a in _events(scene, rng, seconds):
        i = int(t * rate)
        if i >= n:
            continue
        k = kernel[: n - i]
        wave[i : i + len(k)] += a * k
    if scene.motion == "sliding":
        wave += 0.6 * _scrape(scene, f0, rng, rate, n)
    wave /= np.abs(wave).max() or 1.0
    wave += rng.uniform(0.01, 0.06) * _pink(n, rng)
    if rng.random() < 0.3:
        hum = rng.choice([50.0, 60.0])
        wave += rng.uniform(0.005, 0.02) * np.sin(2 * np.pi * hum * np.arange(n) / rate)
    wave *= rng.uniform(0.3, 0.9) / (np.abs(wave).max() or 1.0)
    return wave.astype(np.float32)
