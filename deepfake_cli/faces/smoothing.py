"""Temporal smoothing of landmarks with a One-Euro filter (Casiez et al., CHI 2012).

A One-Euro filter is a low-pass filter whose cutoff rises with speed: a still face is smoothed
hard (no jitter) while a moving one is followed closely (little lag). Here the speed is measured
for the whole face at once and in inter-ocular distances per second, so every point gets the same
cutoff (the face shape stays rigid) and the behaviour does not depend on the face's size in pixels.
"""

from __future__ import annotations

import math

import numpy as np


def inter_ocular_distance(landmarks: np.ndarray) -> float:
    """Distance between the eye centres of 68-point (or 5-point) landmarks, in pixels."""
    points = np.asarray(landmarks, dtype=np.float64)
    if len(points) == 68:
        left, right = points[36:42].mean(axis=0), points[42:48].mean(axis=0)
    else:
        left, right = points[0], points[1]
    return float(np.linalg.norm(right - left))


def _alpha(cutoff: float, rate: float) -> float:
    """Smoothing factor of an exponential filter with ``cutoff`` Hz sampled at ``rate`` Hz."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau * rate)


class OneEuroFilter:
    """One-Euro filter over arrays (e.g. 68x2 landmarks) sampled at a fixed ``rate`` (fps).

    ``min_cutoff`` (Hz) sets the smoothing of a still signal; ``beta`` how fast the cutoff rises
    with speed; ``d_cutoff`` (Hz) smooths the speed estimate. ``scale`` converts the signal's units
    into the units speed is measured in (e.g. pixels -> inter-ocular distances).
    """

    def __init__(self, rate: float, min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0) -> None:
        if rate <= 0 or min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("rate, min_cutoff and d_cutoff must be > 0 and beta >= 0")
        self.rate, self.min_cutoff, self.beta, self.d_cutoff = rate, min_cutoff, beta, d_cutoff
        self._value: np.ndarray | None = None
        self._speed = 0.0

    def reset(self) -> None:
        """Forget the past: the next sample passes through unfiltered."""
        self._value = None
        self._speed = 0.0

    def __call__(self, sample: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Filter one sample; returns the smoothed value (same shape)."""
        sample = np.asarray(sample, dtype=np.float64)
        if self._value is None or self._value.shape != sample.shape:
            self._value, self._speed = sample.copy(), 0.0
            return sample.copy()
        raw_speed = float(np.abs(sample - self._value).mean()) * self.rate * scale
        self._speed += _alpha(self.d_cutoff, self.rate) * (raw_speed - self._speed)
        cutoff = self.min_cutoff + self.beta * self._speed
        self._value = self._value + _alpha(cutoff, self.rate) * (sample - self._value)
        return self._value.copy()


class LandmarkSmoother:
    """Smooths one face's landmarks across video frames; ``strength`` 0 turns it off.

    ``strength`` divides the still-face cutoff: 1 is the default, 2 smooths twice as hard.
    Call ``reset`` when the face is lost (no face, a cut) so the next face does not drift in; a
    jump of more than ``JUMP_EYE_DISTANCES`` between frames (a cut, or another person) also starts
    over, so two faces are never blended.
    """

    MIN_CUTOFF_HZ = 1.0
    BETA = 8.0
    JUMP_EYE_DISTANCES = 2.0

    def __init__(self, fps: float, strength: float = 1.0) -> None:
        if strength < 0:
            raise ValueError("smoothing strength must be >= 0")
        self.strength = strength
        self._filter = OneEuroFilter(rate=fps, min_cutoff=self.MIN_CUTOFF_HZ / strength, beta=self.BETA) \
            if strength > 0 else None
        self._centre: np.ndarray | None = None

    def reset(self) -> None:
        """Start over with the next face."""
        if self._filter is not None:
            self._filter.reset()
        self._centre = None

    def __call__(self, landmarks: np.ndarray) -> np.ndarray:
        """The smoothed landmarks of the next frame."""
        landmarks = np.asarray(landmarks, dtype=np.float64)
        if self._filter is None:
            return landmarks
        eyes = max(inter_ocular_distance(landmarks), 1.0)
        centre = landmarks.mean(axis=0)
        if self._centre is not None and np.linalg.norm(centre - self._centre) > self.JUMP_EYE_DISTANCES * eyes:
            self._filter.reset()
        self._centre = centre
        return self._filter(landmarks, scale=1.0 / eyes)
