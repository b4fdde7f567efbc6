"The demo's classical baseline: harmonic inpainting of the cloud mask (tools/demo.py)."
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from demo import inpaint  # noqa: E402


def test_inpainting_recovers_a_harmonic_image_and_keeps_clear_pixels():
    "A linear ramp is harmonic, so the discrete Laplace solution inside any hole is the ramp itself."
    yy, xx = np.mgrid[0:32, 0:40].astype(np.float64)
    img = np.stack([2 * xx + 3 * yy, 100 - xx, 50 + 0 * xx], -1)          # [H, W, 3]
    mask = np.zeros((32, 40), bool); mask[8:20, 10:25] = True
    cloudy = img.copy(); cloudy[mask] = 255                                   # a "cloud"
    out = inpaint(cloudy, mask, iters=2000)
    assert np.array_equal(out[~mask], img[~mask])
    assert np.abs(out[mask] - img[mask]).max() < 1e-6


def test_inpainting_fills_with_a_smooth_average_not_the_cloud():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 100, (24, 24, 3))
    mask = np.zeros((24, 24), bool); mask[6:18, 6:18] = True
    out = inpaint(np.where(mask[..., None], 255.0, img), mask)
    assert out[mask].max() <= img[~mask].max() and out[mask].min() >= img[~mask].min()    # maximum principle
