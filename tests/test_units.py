"The loaders and the writers agree on physical units: each dataset class's `units` describes both."
import numpy as np
import pytest
import torch

from emrdm.data.core import read_array, to_file_units, to_model_space
from emrdm.data.cuhk import CUHKCR, write_fake_cuhk
from emrdm.data.sen12mscr import SEN12MSCR, write_fake_sen12mscr
from emrdm.data.sen2mtc import Sen2MTC, write_fake_sen2mtc
from emrdm.data.writers import to_physical


def _clear_and_cloudy(name, tmp_path):
    "A dataset of `name` on a fake tree, and (sample 0, its clear file, its first cloudy file)."
    if name == "cuhk-cr1":
        ds = CUHKCR(write_fake_cuhk(tmp_path / "c"), split="test", use_nir=False, scale=1)
        clear, cloudy = ds.files(0)[:2]
    elif name == "sen12mscr":
        ds = SEN12MSCR(write_fake_sen12mscr(tmp_path / "s", rois={"ROIs1158_spring": [106]}), "test")
        _, clear, cloudy = ds.files(0)
    else:
        ds = Sen2MTC(write_fake_sen2mtc(tmp_path / "m"), split="test")
        clear, cloudy = ds.files(0)[:2]
    return ds, ds[0], clear, cloudy


@pytest.mark.parametrize("name", ["cuhk-cr1", "sen12mscr", "sen2mtc"])
def test_loaders_follow_the_units_table(name, tmp_path):
    ds, s, clear, cloudy = _clear_and_cloudy(name, tmp_path)
    lo, hi, clip, file_dtype = ds.units
    mu = s["mu"][0] if s["mu"].ndim == 4 else s["mu"]                      # Sen2MTC: the first date
    raw_clear, raw_cloudy = read_array(clear).astype(np.float64), read_array(cloudy).astype(np.float64)
    np.testing.assert_allclose(s["target"].double().numpy(), to_model_space(raw_clear, lo, hi, clip)[:s["target"].shape[0]], atol=1e-5)
    np.testing.assert_allclose(mu.double().numpy(), to_model_space(raw_cloudy, lo, hi, clip)[:mu.shape[0]], atol=1e-5)
    # and predictions are written back to the files' units: the clear target comes back as its own file values
    back, dtype = to_physical(s["target"], ds)
    assert dtype == file_dtype and back.dtype == np.dtype(dtype)
    want = np.clip(raw_clear, lo, hi) if clip else raw_clear
    np.testing.assert_array_equal(back, want[:back.shape[0]].astype(dtype))
