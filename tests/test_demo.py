"The demo's classical baselines (harmonic inpainting, darkest-date composite, median) and its attention probe (tools/demo.py)."
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import torch  # noqa: E402

from demo import AttentionProbe, darkest_date, inpaint, median_date, warm_start  # noqa: E402


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


def test_darkest_date_takes_each_pixel_from_the_darkest_date():
    "Checked pixel by pixel against a loop: all bands come from the date whose band sum is lowest there."
    g = torch.Generator().manual_seed(0)
    dates = torch.rand(3, 3, 5, 7, generator=g)
    out = darkest_date(dates)
    for y in range(5):
        for x in range(7):
            t = min(range(3), key=lambda k: float(dates[k, :, y, x].sum()))
            assert torch.equal(out[:, y, x], dates[t, :, y, x])


def test_median_date_is_the_middle_value_of_three():
    dates = torch.tensor([[[[3.0]]], [[[1.0]]], [[[2.0]]]])                   # [T=3, C=1, 1, 1]
    assert float(median_date(dates)) == 2.0
    g = torch.Generator().manual_seed(1)
    d = torch.rand(3, 3, 4, 4, generator=g)
    assert torch.equal(median_date(d), d.sort(0).values[1])


def test_attention_probe_keeps_the_last_date_weights_of_a_temporal_network():
    from emrdm.model import EMRDM, load_config
    model = EMRDM(load_config("tiny-l8cr-mt")).eval()
    probe = AttentionProbe(model.net)
    mu = torch.rand(1, 3, 3, 32, 32) * 2 - 1
    model.sample(mu, mu.clone(), steps=2, generator=[torch.Generator().manual_seed(0)])
    probe.close()
    heads, B, T, h, w = probe.attn.shape
    assert (heads, B, T) == (4, 1, 3) and (h, w) == (4, 4)                      # 32 px / patch 2 / two merges
    assert torch.allclose(probe.attn.sum(2), torch.ones(heads, B, h, w), atol=1e-5)   # weights over dates sum to 1
    before = probe.attn
    model.sample(mu, mu.clone(), steps=1)
    assert probe.attn is before                                                 # closed: no longer recording


def test_warm_start_copies_every_mono_weight_and_leaves_only_the_fusion_new():
    from emrdm.model import EMRDM, load_config
    torch.manual_seed(0)
    mono = EMRDM(load_config("tiny-l8cr"))
    mt = warm_start(mono, "tiny-l8cr-mt")
    theirs = mono.net.state_dict()
    for k, v in mt.net.state_dict().items():
        if k.startswith("temporal_encoder."): assert k not in theirs
        else: assert torch.equal(v, theirs[k]), k
