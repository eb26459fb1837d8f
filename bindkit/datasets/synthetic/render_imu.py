"""The IMU of a scene: accelerometer (specific force, m/s^2) and gyroscope (rad/s) of a sensor fixed to the main
object, in bindkit's channel order accel_x, accel_y, accel_z, gyro_x, gyro_y, gyro_z.

The motion sets the pattern:

* still — gravity (9.81 on the sensor's up axis) and sensor noise only;
* bouncing — free fall (the accelerometer reads ~0) between impact spikes, whose intervals and heights
  shrink by the material's restitution; then rest;
* spinning — a steady yaw rate of 4-12 rad/s, centripetal acceleration, and gravity wobbling on x/y at the
  spin rate (a slightly tilted axis);
* sliding — one or two pushes, then friction deceleration (the friction coefficient depends on material)
  until it stops, with rough-surface vibration while it moves;
* shaking — large 3-8 Hz oscillations on the accelerometer and gyroscope, with irregular amplitude.

The sensor is mounted at a random orientation (any yaw, tilted up to 20 degrees) and has noise and biases,
so the axes are not trivially aligned with the motion.
"""

from __future__ import annotations

import numpy as np

from .world import RESTITUTION, Scene

G = 9.81
#: Sliding friction coefficient per material.
FRICTION: dict[str, float] = {"metal": 0.3, "wood": 0.4, "glass": 0.2, "rubber": 0.8}
#: Column names written to the CSV (the first, time in seconds, is ignored by bindkit's loader).
COLUMNS = ("time_s", "accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z")


def _mount(rng: np.random.Generator) -> np.ndarray:
    """Rotation from the object's frame to the sensor's: any yaw, up to 20 degrees of tilt."""
    yaw, tilt, az = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(0, 20)), rng.uniform(0, 2 * np.pi)
    cz, sz = np.cos(yaw), np.sin(yaw)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    axis = np.array([np.cos(az), np.sin(az), 0.0])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rt = np.eye(3) + np.sin(tilt) * k + (1 - np.cos(tilt)) * (k @ k)
    return rt @ rz


def render_imu(scene: Scene, rng: np.random.Generator, seconds: float = 4.0, rate: float = 100.0) -> np.ndarray:
    """float64 (T, 6): accel x/y/z (m/s^2) then gyro x/y/z (rad/s), T = seconds * rate."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    acc = np.zeros((n, 3))
    acc[:, 2] = G
    gyro = np.zeros((n, 3))
    m = scene.motion
    if m == "bouncing":
        e = RESTITUTION[scene.material] * rng.uniform(0.95, 1.05)
        start, gap = rng.uniform(0.05, 0.4), rng.uniform(0.35, 0.55)
        acc[t >= start, 2] = 0.0  # falling from rest at `start`
        spin = rng.normal(0, 0.8, 3)
        gyro[t >= start] = spin
        cur = start + gap / 2  # first impact (it was dropped from the top of a bounce)
        while cur < seconds and gap > 0.03:
            i = int(cur * rate)
            v = G * gap / 2  # impact speed for a flight of `gap` seconds
            peak = min(160.0, v * (1 + e) / 0.02)
            for j, w in ((i - 1, 0.3), (i, 1.0), (i + 1, 0.4)):
                if 0 <= j < n:
                    acc[j, 2] = peak * w
                    acc[j, :2] += rng.normal(0, 0.15 * peak * w, 2)
            spin = spin * e + rng.normal(0, 0.3, 3)
            gyro[i:] = spin
            cur, gap = cur + gap * e, gap * e
        rest = t >= cur
        acc[rest] = [0.0, 0.0, G]
        gyro[rest] = 0.0
    elif m == "spinning":
        w = scene.direction * rng.uniform(4, 12) * (1 - rng.uniform(0, 0.15) * t / seconds)
        phase = np.cumsum(w) / rate
        tilt = np.radians(rng.uniform(3, 10))
        r = rng.uniform(0.02, 0.05)
        gyro[:, 2] = w
        gyro[:, 0] = np.abs(w) * np.sin(tilt) * np.cos(phase)
        gyro[:, 1] = np.abs(w) * np.sin(tilt) * np.sin(phase)
        acc[:, 0] = -w ** 2 * r + G * np.sin(tilt) * np.cos(phase)
        acc[:, 1] = G * np.sin(tilt) * np.sin(phase)
        acc[:, 2] = G * np.cos(tilt)
    elif m == "sliding":
        mu = FRICTION[scene.material] * rng.uniform(0.8, 1.2)
        strokes = int(rng.integers(1, 3))
        for k in range(strokes):
            t0 = (k / strokes + rng.uniform(0.02, 0.15)) * seconds
            push, a_push = rng.uniform(0.1, 0.25), rng.uniform(5, 12)
            heading = scene.direction * (1 if k % 2 == 0 else -1) * np.pi / 2 + rng.normal(0, 0.3) - np.pi / 2
            v_max = a_push * push
            glide = v_max / (mu * G)
            a_t = np.where((t >= t0) & (t < t0 + push), a_push, 0.0)
            a_t = np.where((t >= t0 + push) & (t < t0 + push + glide), -mu * G, a_t)
            moving = (t >= t0) & (t < t0 + push + glide)
            acc[:, 0] += a_t * np.cos(heading)
            acc[:, 1] += a_t * np.sin(heading)
            acc[moving] += rng.normal(0, 0.4, (int(moving.sum()), 3))
            gyro[moving] += rng.normal(0, 0.05, (int(moving.sum()), 3))
    elif m == "shaking":
        f = rng.uniform(3, 8)
        env = 1 + 0.35 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t + rng.uniform(0, 2 * np.pi))
        axis = rng.normal(0, 1, 2)
        axis /= np.linalg.norm(axis)
        amp, wamp = rng.uniform(5, 15), rng.uniform(2, 6)
        ph = rng.uniform(0, 2 * np.pi)
        s = env * np.sin(2 * np.pi * f * t + ph) + 0.25 * np.sin(4 * np.pi * f * t + 2 * ph)
        acc[:, :2] += amp * s[:, None] * axis
        gyro += wamp * np.cos(2 * np.pi * f * t + ph)[:, None] * env[:, None] * rng.normal(0, 1, 3)
    rot = _mount(rng)
    acc = acc @ rot.T + rng.normal(0, 0.1, 3) + rng.normal(0, 0.08, (n, 3))
    gyro = gyro @ rot.T + rng.normal(0, 0.01, 3) + rng.normal(0, 0.02, (n, 3))
    return np.concatenate([acc, gyro], axis=1)


def imu_csv(data: np.ndarray, rate: float) -> bytes:
    """CSV bytes: header :data:`COLUMNS`, one row per sample (time in s, then the six channels)."""
    n = data.shape[0]
    table = np.concatenate([(np.arange(n) / rate)[:, None], data], axis=1)
    row = ",".join(["%.3f"] * len(COLUMNS))
    lines = [",".join(COLUMNS), *(row % tuple(r) for r in table.tolist()), ""]
    return "\n".join(lines).encode("ascii")
