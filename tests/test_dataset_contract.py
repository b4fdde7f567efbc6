"""One contract for every registered dataset: the same battery runs over each class in `emrdm.data.DATASETS`, on the
fake tree its own writer makes in the real layout. A new dataset passes it by registering itself and nothing else."""
import inspect
import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from emrdm.data import DATASETS, open_dataset  # noqa: E402
from emrdm.data.check import check_dataset  # noqa: E402
from emrdm.data.core import CloudRemovalDataset, DataError, Units, read_array, to_model_space  # noqa: E402
from emrdm.model import DataConfig  # noqa: E402

NAMES = list(DATASETS)


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    root = tmp_path_factory.mktemp("fakes")
    return {name: cls.write_fake(root / name) for name, cls in DATASETS.items()}


def opened(name, fakes, split=None):
    where = fakes[name]
    return open_dataset(name, where["root"], split, where.get("nir_root"))


def test_registry_names_are_the_classes_names():
    assert NAMES == ["cuhk-cr1", "cuhk-cr2", "l8cr", "l8cr-mt", "sen12mscr", "sen2mtc", "folder"]
    for name, cls in DATASETS.items():
        assert issubclass(cls, CloudRemovalDataset)
        assert {cls.train_split, cls.val_split, cls.test_split} <= set(cls.splits)
        assert cls.protocol in ("cuhk", "sen12mscr", "sen2mtc")


@pytest.mark.parametrize("name", NAMES)
def test_fake_tree_passes_data_check(name, fakes):
    where = fakes[name]
    report = check_dataset(name, where["root"], nir_root=where.get("nir_root"), progress=False)
    assert report.ok, report.table()
    assert set(report.samples) == set(DATASETS[name].splits) and all(n > 0 for n in report.samples.values())


@pytest.mark.parametrize("name", NAMES)
def test_samples_follow_the_batch_schema(name, fakes):
    cls = DATASETS[name]
    for split in cls.splits:
        ds = opened(name, fakes, split)
        assert len(ds) > 0
        s = ds[0]
        assert {"mu", "cond", "path"} <= set(s) and isinstance(s["path"], str)
        for key in ("target", "mu", "cond"):
            if key in s: assert s[key].dtype == torch.float32 and torch.isfinite(s[key]).all(), key
        assert s["mu"].shape[-3] == len(ds.bands) and s["cond"].shape[-3] == len(ds.cond_bands)
        if "target" in s:
            assert s["target"].shape == s["mu"].shape[-3:] and s["target"].abs().max() <= 1.5
        assert ds.cloudy_file(0) in ds.files(0) and ds.cloudy_file(0).is_file()
        assert len(ds.files(0)) == len(ds.file_kinds)


@pytest.mark.parametrize("name", NAMES)
def test_channels_match_the_configuration(name, fakes):
    "What `channels` promises a configuration is what the loader delivers, with and without NIR where that is an option."
    cls = DATASETS[name]
    for use_nir in (True, False):
        data = DataConfig(dataset=name, use_nir=use_nir)
        want = cls.channels(data)
        if want is None: continue                                          # the user's files decide
        where = fakes[name]
        ds = open_dataset(name, where["root"], cls.test_split, where.get("nir_root") if use_nir else None, **cls.options(data))
        s = ds[0]
        assert (s["mu"].shape[-3], s["cond"].shape[-3]) == want, (use_nir, want)
        assert len(cls.input_bands(data, want[0])) in (want[0], want[1]), "a scene file holds the target or the condition bands"


@pytest.mark.parametrize("name", NAMES)
def test_unknown_split_and_missing_root(name, fakes, tmp_path):
    cls = DATASETS[name]
    with pytest.raises(ValueError, match="has splits"): opened(name, fakes, "nope")
    with pytest.raises((DataError, ValueError)): open_dataset(name, tmp_path / "nowhere", cls.train_split)


@pytest.mark.parametrize("name", NAMES)
def test_units_are_what_the_loader_uses(name, fakes):
    "The class's `units` map one of the sample's files onto its target exactly: the loader and the writers agree."
    cls = DATASETS[name]
    where = fakes[name]
    extra = {"scale": 1} if "scale" in inspect.signature(cls).parameters else {}       # CUHK-CR halves images by default
    ds = open_dataset(name, where["root"], cls.test_split, where.get("nir_root"), **extra)   # no augmentation
    u, s = ds.units, ds[0]
    assert isinstance(u, Units) and u.lo < u.hi
    target = s["target"].double().numpy()
    matches = []
    for f in ds.files(0):
        raw = read_array(f).astype(np.float64)
        k = min(raw.shape[0], target.shape[0])
        if raw.shape[-2:] == target.shape[-2:] and k >= 3:
            matches.append(np.allclose(to_model_space(raw[:k], u.lo, u.hi, u.clip), target[:k], atol=1e-5))
    assert any(matches), f"no file of sample 0 maps onto its target with {u}"


@pytest.mark.parametrize("name", NAMES)
def test_a_nir_tree_only_where_there_is_one(name, fakes, tmp_path):
    "Passing a NIR tree to a dataset that has none is an error, not ignored."
    cls = DATASETS[name]
    if "nir_root" in inspect.signature(cls).parameters: return
    with pytest.raises(ValueError, match="has no NIR tree"): open_dataset(name, fakes[name]["root"], None, tmp_path)


@pytest.mark.parametrize("name", NAMES)
def test_plot_with_a_prediction(name, fakes):
    ds = opened(name, fakes)
    s = ds[0]
    target = s.get("target", s["mu"] if s["mu"].ndim == 3 else s["mu"][0])
    fig = ds.plot(s, prediction=target * 0.5)
    titles = [ax.get_title() for ax in fig.axes]
    assert "prediction" in titles and any(t.startswith("cloudy") for t in titles)
    plt.close(fig)
