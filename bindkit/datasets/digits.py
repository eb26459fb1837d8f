"""A small real-data binding set: handwritten digits (images) and spoken digit names (audio), paired by label.

The images are scikit-learn's handwritten digits (``sklearn.datasets.load_digits``: 1,797 real 8 x 8 scans of
handwriting by 43 people, BSD licence, shipped inside scikit-learn, no download). The audio is the ten class
names spoken by espeak-ng (Debian's ``espeak-ng``) in many voices, variants, speeds and pitches, then put
through what real recordings go through: gain, background noise, silence before and after, a little room
echo, and for some an 8 kHz telephone band. Some voices are held out for the test. Nothing is recorded
together: image-audio pairs are *class-level* (each recording is paired with a random image of its digit) and
carry a ``label`` column, as a user binding a sensor by label would have.

Layout of OUT (paths relative to the manifest's folder)::

    image_text.csv   image,text,label    training images with captions from templates
    image_audio.csv  image,audio,label   training recordings (train voices) with an image of the same digit
    image_test.csv   image,label         held-out images (zero-shot)
    audio_test.csv   audio,label         recordings by held-out voices (emergent audio -> text)
    labels.json      the ten class names; templates.json: the evaluation templates
    images/ audio/   the files (8 x 8 grey PNG; 16-bit WAV at 16 or 8 kHz)
    README.md        what is where and the settings used

espeak-ng's speech is synthetic: judge a training recipe by whether it is what a practitioner would do for
small real data, not by its score on these voices alone.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DatasetError

CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
#: Captions of the training images (the evaluation templates below are a subset, as a user's would be).
CAPTION_TEMPLATES = ["{}", "the digit {}", "a handwritten {}", "the number {}", "a {} written by hand",
                     "a scan of the digit {}", "handwriting: {}", "a drawing of a {}"]
EVAL_TEMPLATES = ["{}", "the digit {}"]
#: espeak-ng accents (all installed with the Debian package) and voice variants; a speaker is a pair.
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
            "croak", "Andy", "Annie", "Denis", "Mario", "Michael", "Storm", "Tweaky", "Zac"]
#: Test speakers use variants no training speaker uses (and accents mixed with them): a new voice, not a new take.
TEST_VARIANTS = ["f4", "m6", "klatt3", "Zac"]


@dataclass
class Settings:
    """How much to write: speakers x digits x takes recordings (train), test speakers x digits x test takes."""

    train_speakers: int = 20
    takes: int = 13
    test_takes: int = 5
    seed: int = 0

    @classmethod
    def small(cls, seed: int = 0) -> "Settings":
        """A size for tests: 6 training speakers x 10 digits x 4 takes."""
        return cls(train_speakers=6, takes=4, test_takes=2, seed=seed)


def _need_tools() -> tuple[Any, str]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError("the digits data set needs scikit-learn (pip install scikit-learn)") from None
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DatasetError("the spoken digits need espeak-ng (Debian/Ubuntu: apt-get install espeak-ng)")
    return load_digits, exe


def _speakers(rng: np.random.Generator, n_train: int) -> tuple[list[str], list[str]]:
    train_vars = [v for v in VARIANTS if v not in TEST_VARIANTS]
    pairs = [(a, v) for a in ACCENTS for v in train_vars]
    order = rng.permutation(len(pairs))[:n_train]
    train = [f"{pairs[i][0]}+{pairs[i][1]}" for i in order]
    test = [f"{ACCENTS[(i * 3 + 1) % len(ACCENTS)]}+{v}" for i, v in enumerate(TEST_VARIANTS)]
    return train, test


def _speak(exe: str, voice: str, word: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", tmp.name, word],
                       check=True, capture_output=True, timeout=60)
        wav, rate = sf.read(tmp.name, dtype="float32", always_2d=False)
    return wav, int(rate)


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), src, dst).numpy()


def _degrade(x: np.ndarray, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """What a recording adds: room echo, silence around the word, background noise, gain, maybe a phone line."""
    if rng.random() < 0.5:  # a small room: exponentially decaying noise as impulse response (RT60 0.1-0.4 s)
        rt60 = rng.uniform(0.1, 0.4)
        n = int(rt60 * rate)
        ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)
        ir[0] = 1.0 / rng.uniform(0.15, 0.5)
        x = np.convolve(x, ir)[: len(x) + n // 2]
    x = x / (np.abs(x).max() + 1e-9)
    pad = (rng.uniform(0.0, 0.4, size=2) * rate).astype(int)
    x = np.concatenate([np.zeros(pad[0]), x, np.zeros(pad[1])])
    snr_db = rng.uniform(5.0, 40.0)
    noise = rng.standard_normal(len(x))
    if rng.random() < 0.5:  # pink-ish (low-frequency) noise: hum and room, not only hiss
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(64) / 64, mode="same")
    p_sig = np.mean(x ** 2) + 1e-12
    noise *= math.sqrt(p_sig / (np.mean(noise ** 2) + 1e-12) / 10 ** (snr_db / 10))
    x = (x + noise) * 10 ** (rng.uniform(-24.0, -1.0) / 20)
    if rng.random() < 0.3:  # telephone band, stored at 8 kHz (as many public speech sets are)
        x = _resample(x, rate, 8000)
        rate = 8000
    return np.clip(x, -1.0, 1.0).astype(np.float32), rate


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def write_spoken_digits(out: str | Path, settings: Settings | None = None,
                        progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write the data set to ``out`` (see the module docstring); returns a summary (counts, speakers)."""
    import soundfile as sf
    from PIL import Image

    s = settings or Settings()
    load_digits, exe = _need_tools()
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(s.seed)

    digits = load_digits()
    imgs = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    labels = digits.target.astype(int)
    order = rng.permutation(len(labels))
    n_test = len(labels) // 4
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    for i in range(len(labels)):
        Image.fromarray(imgs[i], mode="L").save(out / "images" / f"{i:04d}.png")
    by_class = {c: [int(i) for i in train_idx if labels[i] == c] for c in range(10)}
    image_text = [[f"images/{i:04d}.png", CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
                   .format(CLASSES[labels[i]]), CLASSES[labels[i]]] for i in train_idx]
    _csv(out / "image_text.csv", ["image", "text", "label"], image_text)
    _csv(out / "image_test.csv", ["image", "label"],
         [[f"images/{i:04d}.png", CLASSES[labels[i]]] for i in test_idx])

    train_voices, test_voices = _speakers(rng, s.train_speakers)
    jobs = []
    for split, voices, takes in (("train", train_voices, s.takes), ("test", test_voices, s.test_takes)):
        for voice in voices:
            for c in range(10):
                for t in range(takes):
                    jobs.append((split, voice, c, t, int(rng.integers(110, 230)), int(rng.integers(15, 85)),
                                 int(rng.integers(2**31))))

    def render(job: tuple) -> list[Any]:
        split, voice, c, t, speed, pitch, seed = job
        wav, rate = _speak(exe, voice, CLASSES[c], speed, pitch)
        wav, rate = _degrade(wav, rate, np.random.default_rng(seed))
        if rate != 8000:
            wav, rate = _resample(wav, rate, 16000), 16000
        name = f"audio/{split}_{voice.replace('+', '_')}_{CLASSES[c]}_{t}.wav"
        sf.write(out / name, wav, rate, subtype="PCM_16")
        return [split, name, c]

    done: list[list[Any]] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for row in pool.map(render, jobs):
            done.append(row)
            if progress:
                progress(len(done), len(jobs))
    pairs = [[f"images/{int(rng.choice(by_class[c])):04d}.png", name, CLASSES[c]]
             for split, name, c in done if split == "train"]
    _csv(out / "image_audio.csv", ["image", "audio", "label"], pairs)
    _csv(out / "audio_test.csv", ["audio", "label"], [[name, CLASSES[c]] for split, name, c in done if split == "test"])
    (out / "labels.json").write_text(json.dumps(CLASSES) + "\n")
    (out / "templates.json").write_text(json.dumps(EVAL_TEMPLATES) + "\n")
    summary = {"images_train": len(train_idx), "images_test": len(test_idx), "image_text_pairs": len(image_text),
               "image_audio_pairs": len(pairs), "audio_test": len(done) - len(pairs),
               "train_voices": train_voices, "test_voices": test_voices, "seed": s.seed}
    (out / "README.md").write_text(
        "# Spoken digits (bindkit.datasets.digits)\n\n" + (__doc__ or "").split("\n\n", 1)[1]
        + "\n\nThis copy:\n\n```json\n" + json.dumps(summary, indent=1) + "\n```\n")
    return summary
