"`emrdm remove-clouds` on GeoTIFFs: georeferencing kept, errors in one line."
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

EMRDM = str(Path(sys.executable).parent / "emrdm")
RGB = ["--set", "data.use_nir=false", "--set", "network.in_channels=6", "--set", "network.out_channels=3"]   # tiny-cuhk, no NIR


def write(path, arr, dtype, nodata=None, transform=from_origin(300000, 6000000, 30, 30)):
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=arr.shape[0], dtype=dtype,
                       crs="EPSG:32621", transform=transform, nodata=nodata) as dst:
        dst.write(arr.astype(dtype))


def test_remove_clouds_command(tmp_path):
    g = np.random.default_rng(1)
    write(tmp_path / "scene.tif", g.integers(1, 255, (3, 150, 130)), "uint8", nodata=0)
    out = subprocess.run([EMRDM, "remove-clouds", "--config", "tiny-cuhk", *RGB, tmp_path / "scene.tif", "--out", tmp_path / "clear.tif",
                          "--tile", "64", "--overlap", "16", "--steps", "2", "--quiet"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    with rasterio.open(tmp_path / "clear.tif") as a, rasterio.open(tmp_path / "scene.tif") as b:
        assert (a.crs, a.transform, a.shape, a.nodata, a.dtypes, a.count) == (b.crs, b.transform, b.shape, b.nodata, b.dtypes, 3)
    bad = subprocess.run([EMRDM, "remove-clouds", tmp_path / "scene.tif", "--config", "tiny-cuhk", "--out", tmp_path / "x.tif"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "has 3 bands" in bad.stderr and "expects 4" in bad.stderr and "Traceback" not in bad.stderr


def test_remove_clouds_refuses_other_units(tmp_path):
    "A uint16 0..10000 scene through an 8-bit model is refused in one line naming both units; --value-range states them."
    write(tmp_path / "dn.tif", np.random.default_rng(2).integers(0, 10000, (3, 64, 64)), "uint16")
    cmd = [EMRDM, "remove-clouds", tmp_path / "dn.tif", "--config", "tiny-cuhk", *RGB, "-o", tmp_path / "clear.tif",
           "--tile", "64", "--overlap", "16", "--steps", "2", "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert "dn.tif is uint16 with values" in out.stderr and "the model takes 0..255" in out.stderr and "--value-range" in out.stderr
    assert not (tmp_path / "clear.tif").exists() and not [p for p in tmp_path.iterdir() if ".part" in p.name]
    out = subprocess.run(cmd + ["--value-range", "0", "10000"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    with rasterio.open(tmp_path / "clear.tif") as a: assert a.dtypes[0] == "uint16" and a.read().max() > 255


def test_remove_clouds_samples_writes_the_mean_of_single_samples(tmp_path):
    "samples=2 is the mean of the two single-sample runs from seeds 0 and SAMPLE_SEED_STRIDE (float32 output, no rounding)."
    import torch
    from emrdm.inference import SAMPLE_SEED_STRIDE, remove_clouds
    from emrdm.model import EMRDM, load_config
    torch.manual_seed(0)
    model = EMRDM(load_config("tiny-l8cr")).eval()
    write(tmp_path / "scene.tif", np.random.default_rng(3).integers(1, 255, (3, 96, 80)), "uint8")
    run = lambda name, **kw: remove_clouds(model, tmp_path / "scene.tif", tmp_path / name, tile=64, overlap=16, steps=2,
                                           out_dtype="float32", progress=False, **kw)
    with rasterio.open(run("mean.tif", samples=2)) as m, rasterio.open(run("a.tif", seed=0)) as a, \
         rasterio.open(run("b.tif", seed=SAMPLE_SEED_STRIDE)) as b:
        mean, one, two = m.read(), a.read(), b.read()
    assert np.abs(one - two).max() > 1                                          # two different samples
    assert np.allclose(mean, (one + two) / 2, atol=1e-3)
    import pytest
    with pytest.raises(ValueError, match="samples must be"): run("x.tif", samples=0)


def test_uncertainty_is_the_spread_of_single_samples_in_file_units(tmp_path):
    "--uncertainty with samples=3: the standard deviation (K - 1) of the three single-sample runs, float32, NaN on nodata; a calibration scales it."
    import torch
    from emrdm.inference import SAMPLE_SEED_STRIDE, remove_clouds
    from emrdm.model import EMRDM, load_config
    from emrdm.uncertainty import calibrated
    from emrdm.config import UncertaintyConfig
    torch.manual_seed(0)
    model = EMRDM(load_config("tiny-l8cr")).eval()
    scene = np.random.default_rng(4).integers(1, 255, (3, 96, 80)); scene[:, :10, :12] = 0
    write(tmp_path / "scene.tif", scene, "uint8", nodata=0)
    run = lambda m, name, **kw: remove_clouds(m, tmp_path / "scene.tif", tmp_path / name, tile=64, overlap=16, steps=2,
                                              out_dtype="float32", progress=False, **kw)
    run(model, "mean.tif", samples=3, uncertainty=tmp_path / "u.tif")
    singles = []
    for k in range(3):
        with rasterio.open(run(model, f"s{k}.tif", seed=k * SAMPLE_SEED_STRIDE)) as src: singles.append(src.read().astype(np.float64))
    with rasterio.open(tmp_path / "u.tif") as u, rasterio.open(tmp_path / "scene.tif") as ref:
        assert (u.crs, u.transform, u.shape, u.count, u.dtypes[0]) == (ref.crs, ref.transform, ref.shape, 3, "float32")
        assert np.isnan(u.nodata) and "no calibration" in u.tags()["uncertainty"]
        spread = u.read()
    want = np.std(np.stack(singles), axis=0, ddof=1)
    valid = ~(scene == 0).all(0)
    assert np.isnan(spread[:, ~valid]).all() and np.isfinite(spread[:, valid]).all()
    np.testing.assert_allclose(spread[:, valid], want[:, valid], rtol=1e-4, atol=1e-3)
    assert want[:, valid].mean() > 1                                            # the samples do differ
    cal = calibrated(model, UncertaintyConfig("scale", 2.0, samples=3, fitted_on="a test"))
    run(cal, "mean2.tif", samples=3, uncertainty=tmp_path / "u2.tif")
    with rasterio.open(tmp_path / "u2.tif") as u2:
        np.testing.assert_allclose(u2.read()[:, valid], 2 * spread[:, valid], rtol=1e-5)
        assert "scale calibration, fitted with K=3 on a test" in u2.tags()["uncertainty"]
    # a calibration with a 3x3 window: twice the mean of the spread over each pixel's window of valid pixels, the same
    # when the scene is sampled in blocks (their halo, the overlap, covers the window)
    def window_mean(s, ok):
        out = np.full(s.shape, np.nan)
        for y in range(s.shape[1]):
            for x in range(s.shape[2]):
                ys, xs = slice(max(y - 1, 0), y + 2), slice(max(x - 1, 0), x + 2)
                if ok[y, x]: out[:, y, x] = s[:, ys, xs][:, ok[ys, xs]].mean(1)
        return out
    cal3 = calibrated(model, UncertaintyConfig("scale", 2.0, samples=3, fitted_on="a test", smooth=3))
    for name, kw in (("whole", {}), ("blocks", dict(max_pixels=48 * 48))):
        run(model, f"m-{name}.tif", samples=3, uncertainty=tmp_path / f"raw-{name}.tif", **kw)
        run(cal3, f"m3-{name}.tif", samples=3, uncertainty=tmp_path / f"u3-{name}.tif", **kw)
        with rasterio.open(tmp_path / f"raw-{name}.tif") as r, rasterio.open(tmp_path / f"u3-{name}.tif") as u3:
            raw, got = r.read().astype(np.float64), u3.read()
            assert "averaged over 3x3 pixels" in u3.tags()["uncertainty"]
        np.testing.assert_allclose(got[:, valid], 2 * window_mean(raw, valid)[:, valid], rtol=1e-5)
        assert np.isnan(got[:, ~valid]).all()


def test_uncertainty_command_and_its_refusals(tmp_path):
    write(tmp_path / "scene.tif", np.random.default_rng(5).integers(1, 255, (3, 64, 64)), "uint8")
    base = [EMRDM, "remove-clouds", tmp_path / "scene.tif", "--config", "tiny-cuhk", *RGB, "--tile", "64", "--overlap", "16",
            "--steps", "1", "--quiet", "-o", tmp_path / "clear.tif"]
    one = subprocess.run(base + ["--uncertainty", tmp_path / "u.tif"], capture_output=True, text=True)
    assert one.returncode == 2 and "give samples >= 2" in one.stderr and not (tmp_path / "clear.tif").exists(), one.stderr
    same = subprocess.run(base + ["--samples", "2", "--uncertainty", tmp_path / "clear.tif"], capture_output=True, text=True)
    assert same.returncode != 0 and "would overwrite the input" in same.stderr, same.stderr
    ok = subprocess.run(base + ["--samples", "2", "--uncertainty", tmp_path / "u.tif"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    with rasterio.open(tmp_path / "u.tif") as u: assert u.count == 3 and u.dtypes[0] == "float32"
    again = subprocess.run(base + ["--samples", "2", "--uncertainty", tmp_path / "u.tif"], capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr


def test_uncertainty_of_a_temporal_model_and_of_a_one_step_model(tmp_path):
    "Three dates through a temporal model, and a 1-step sampler (a distilled student's): a finite spread wherever the input is valid."
    import torch
    from emrdm.inference import remove_clouds
    from emrdm.model import EMRDM, load_config
    torch.manual_seed(0)
    g = np.random.default_rng(6)
    dates = [tmp_path / f"d{t}.tif" for t in range(3)]
    for d in dates: write(d, g.integers(1, 255, (3, 64, 72)), "uint8")
    for model, src, steps in ((EMRDM(load_config("tiny-l8cr-mt")).eval(), dates, 2), (EMRDM(load_config("tiny-l8cr", {"sampler.steps": 1})).eval(), dates[0], None)):
        u = remove_clouds(model, src, tmp_path / "clear.tif", tile=64, overlap=16, steps=steps, samples=2, progress=False,
                          overwrite=True, uncertainty=tmp_path / "u.tif")
        with rasterio.open(tmp_path / "u.tif") as f:
            spread = f.read()
        assert spread.shape == (3, 64, 72) and np.isfinite(spread).all() and spread.mean() > 0.1, (model.config.name, spread.mean())
