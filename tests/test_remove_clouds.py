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
