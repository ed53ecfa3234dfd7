"""Alignment geometry: Umeyama, template crops, warp/unwarp."""

from __future__ import annotations

import cv2
import numpy as np

from deepfake_cli.faces.align import (
    alignment_matrix,
    template_points,
    transform_points,
    umeyama,
    unwarp_face,
    warp_face,
)


def test_umeyama_recovers_a_known_similarity_to_1e_6(rng: np.random.Generator) -> None:
    src = rng.uniform(0, 300, size=(68, 2))
    angle, scale, shift = np.deg2rad(17.0), 0.73, np.array([12.5, -40.25])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rotation.T + shift
    estimated = umeyama(src, dst)
    assert np.allclose(estimated[:2, :2], rotation, atol=1e-6)
    assert np.allclose(estimated[:2, 2], shift, atol=1e-6)


def test_alignment_maps_landmarks_onto_the_template() -> None:
    size, coverage = 256, 0.625
    target = template_points(size, coverage)
    moved = target @ np.array([[0.8, 0.3], [-0.3, 0.8]]).T + [50, 20]
    matrix = alignment_matrix(moved, size, coverage)
    assert np.abs(transform_points(moved, matrix) - target).max() < 1e-6


def test_five_point_fallback_aligns_too() -> None:
    five = template_points(128, 0.6, count=5) * 1.7 + 9
    matrix = alignment_matrix(five, 128, 0.6)
    assert np.abs(transform_points(five, matrix) - template_points(128, 0.6, count=5)).max() < 1e-6


def test_warp_then_unwarp_restores_the_face_region(rng: np.random.Generator) -> None:
    frame = cv2.GaussianBlur(rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8), (0, 0), 3)
    matrix = cv2.getRotationMatrix2D((160, 120), 12, 1.3)
    face = warp_face(frame, matrix, 128)
    back, valid = unwarp_face(face, matrix, frame.shape)
    inner = cv2.erode((valid > 0.99).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert inner.sum() > 5000
    error = np.abs(back.astype(float) - frame.astype(float))[inner].mean()
    assert error < 3.0
    assert valid[0, 0] == 0 and valid.max() == 1.0


def test_strong_downscale_warp_is_antialiased() -> None:
    stripes = np.zeros((512, 512, 3), np.uint8)
    stripes[:, ::2] = 255
    matrix = np.array([[0.25, 0, 0], [0, 0.25, 0]], dtype=np.float64)
    face = warp_face(stripes, matrix, 64)
    assert abs(float(face.mean()) - 127.5) < 10 and face.std() < 20
