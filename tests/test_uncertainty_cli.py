"`emrdm calibrate` then `emrdm remove-clouds --uncertainty`: the calibration travels in the model file and reaches the map."
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from emrdm.checkpoint import load
from emrdm.data.cuhk import write_fake_cuhk

EMRDM = str(Path(sys.executable).parent / "emrdm")
RGB = ["--set", "data.use_nir=false", "--set", "network.in_channels=6", "--set", "network.out_channels=3"]


def run(*args):
    return subprocess.run([EMRDM, *map(str, args)], capture_output=True, text=True)


def test_calibrate_then_remove_clouds_with_uncertainty(tmp_path):
    write_fake_cuhk(tmp_path / "data", n_train=1, n_test=2, size=32)
    out = run("calibrate", "--config", "tiny-cuhk", *RGB, "--data", tmp_path / "data", "--split", "test", "--samples", 3,
              "--method", "isotonic", "--quiet", "-o", tmp_path / "cal.pt")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("2 images of cuhk-cr1 test, K = 3: Spearman(spread, |error|) ") and "UCE" in out.stdout
    cal = load(tmp_path / "cal.pt").config.uncertainty
    assert (cal.method, cal.samples, cal.fitted_on) == ("isotonic", 3, "cuhk-cr1 test split, 2 images") and len(cal.spread) >= 2
    again = run("calibrate", "--config", "tiny-cuhk", *RGB, "--data", tmp_path / "data", "--split", "test", "-o", tmp_path / "cal.pt")
    assert again.returncode != 0 and "exists" in again.stderr
    even = run("calibrate", "--config", "tiny-cuhk", *RGB, "--data", tmp_path / "data", "--smooth", 4, "-o", tmp_path / "c4.pt")
    assert even.returncode == 2 and "--smooth: must be odd" in even.stderr and not (tmp_path / "c4.pt").exists()
    five = run("calibrate", "--config", "tiny-cuhk", *RGB, "--data", tmp_path / "data", "--split", "test", "--samples", 2,
               "--smooth", 5, "--quiet", "-o", tmp_path / "c5.pt")
    assert five.returncode == 0 and "averaged over 5x5 pixels" in five.stdout, five.stderr[-2000:]
    assert load(tmp_path / "c5.pt").config.uncertainty.smooth == 5
    with rasterio.open(tmp_path / "scene.tif", "w", driver="GTiff", height=64, width=64, count=3, dtype="uint8", crs="EPSG:32621",
                       transform=from_origin(300000, 6000000, 30, 30)) as dst:
        dst.write(np.random.default_rng(0).integers(1, 255, (3, 64, 64)).astype("uint8"))
    rc = run("remove-clouds", tmp_path / "scene.tif", "--checkpoint", tmp_path / "cal.pt", "--tile", 32, "--overlap", 8, "--steps", 2,
             "--samples", 2, "--uncertainty", tmp_path / "u.tif", "-o", tmp_path / "clear.tif", "--quiet")
    assert rc.returncode == 0, rc.stderr[-3000:]
    assert rc.stdout.strip() == f"written {tmp_path / 'clear.tif'} and its uncertainty {tmp_path / 'u.tif'}"
    with rasterio.open(tmp_path / "u.tif") as u:
        window = f" of the spread averaged over {cal.smooth}x{cal.smooth} pixels" if cal.smooth > 1 else ""
        assert f"isotonic calibration{window}, fitted with K=3 on cuhk-cr1 test split, 2 images" in u.tags()["uncertainty"]
        values = u.read()
    lo, hi = min(cal.error) * 127.5, max(cal.error) * 127.5                    # the map's range, in file units (0..255)
    assert values.min() >= lo - 1e-3 and values.max() <= hi + 1e-3


def test_calibrate_reports_the_rank_correlation_with_the_absolute_error(tmp_path):
    "The printed Spearman is that of the spread with |error| (not the signed error), recomputed here from the same samples."
    import re
    import torch
    from emrdm.data.cuhk import CUHKCR
    from emrdm.model import EMRDM, load_config
    from emrdm.uncertainty import spearman, spread_and_error
    write_fake_cuhk(tmp_path / "data", n_train=1, n_test=2, size=32)
    torch.manual_seed(0)
    EMRDM(load_config("tiny-cuhk", {"data.use_nir": False, "network.in_channels": 6, "network.out_channels": 3})).save(tmp_path / "m.pt")
    out = run("calibrate", "--checkpoint", tmp_path / "m.pt", "--data", tmp_path / "data", "--split", "test", "--samples", 3,
              "--quiet", "-o", tmp_path / "cal.pt")
    assert out.returncode == 0, out.stderr[-3000:]
    printed = float(re.search(r"Spearman\(spread, \|error\|\) (-?[0-9.]+)", out.stdout).group(1))
    r = spread_and_error(load(tmp_path / "m.pt"), CUHKCR(tmp_path / "data", split="test", use_nir=False), 3, 0, progress=False)
    spread, err = torch.cat([t.flatten() for t in r.spread]), torch.cat([t.flatten() for t in r.error])
    assert printed == round(spearman(spread, err.abs()), 3) and printed != round(spearman(spread, err), 3)
