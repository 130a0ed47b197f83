"""Fixtures for the training tests: a tiny view store with planted structure.

Small views (28 px morphology, 56 px microenvironment, 2 channels) keep a
training step of the pico model at a few tens of milliseconds.
"""

from __future__ import annotations

import numpy as np
import pytest


def planted_views(n: int = 160, *, seed: int = 0, channels: int = 2, ms: int = 28, es: int = 56):
    """uint8 morphology (n, C, ms, ms) and microenvironment (n, C, es, es) views.

    Every cell has a class (4 classes: stripe frequency in channel 1) and its own
    radius, brightness and stripe phase. The microenvironment view shows the same
    cell at half scale in its centre plus class-dependent neighbours, so a model
    can match the two views of one cell (cross-view Recall@K) and group classes.
    """
    rng = np.random.default_rng(seed)
    klass = rng.integers(0, 4, n)
    radius = rng.uniform(0.2, 0.45, n)  # fraction of the morphology window
    bright = rng.uniform(90, 250, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    freq = np.array([1.0, 2.0, 3.5, 5.0])[klass]

    def cell(size, scale, cx, cy):
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        d = np.sqrt((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2)
        mask = d < (radius * scale)[:, None, None]
        ch0 = mask * bright[:, None, None]
        stripes = 0.5 + 0.5 * np.sin(
            2 * np.pi * freq[:, None, None] * xx[None] / scale + phase[:, None, None]
        )
        ch1 = mask * (60 + 190 * stripes)
        return mask, ch0, ch1

    c = np.full(n, 0.5)
    _, m0, m1 = cell(ms, 1.0, c, c)
    morph = np.zeros((n, channels, ms, ms), np.uint8)
    morph[:, 0], morph[:, 1 % channels] = m0, np.maximum(morph[:, 1 % channels], m1)

    micro = np.zeros((n, channels, es, es), np.float32)
    yy, xx = np.mgrid[0:es, 0:es].astype(np.float32) / es
    for _ in range(6):  # neighbours: ring intensity in channel 1 says the class (the "niche")
        nx, ny = rng.uniform(0.05, 0.95, n), rng.uniform(0.05, 0.95, n)
        d = np.sqrt((xx[None] - nx[:, None, None]) ** 2 + (yy[None] - ny[:, None, None]) ** 2)
        blob = d < rng.uniform(0.05, 0.09, n)[:, None, None]
        micro[:, 0] = np.maximum(micro[:, 0], blob * rng.uniform(60, 160, n)[:, None, None])
        micro[:, 1 % channels] = np.maximum(
            micro[:, 1 % channels], blob * (40 + 50 * klass)[:, None, None]
        )
    _, e0, e1 = cell(es, 0.5, c, c)
    inside = e0 > 0
    micro[:, 0] = np.where(inside, e0, micro[:, 0])
    micro[:, 1 % channels] = np.where(inside, e1, micro[:, 1 % channels])
    return morph, micro.clip(0, 255).astype(np.uint8), klass


def make_store(morph, micro, channel_names=None):
    """An in-memory :class:`madspatial.io.ViewStore` over the arrays."""
    from madspatial.io import ViewStore

    n = len(morph)
    attrs = {"channel_names": list(channel_names or [f"c{i}" for i in range(morph.shape[1])])}
    return ViewStore(
        morph,
        micro,
        np.arange(1, n + 1, dtype=np.int64),
        np.zeros((n, 2)),
        np.full(n, 100.0),
        attrs,
    )


@pytest.fixture(scope="session")
def planted():
    morph, micro, klass = planted_views(160, seed=0)
    return morph, micro, klass


@pytest.fixture
def planted_store(planted):
    morph, micro, _ = planted
    return make_store(morph, micro)
