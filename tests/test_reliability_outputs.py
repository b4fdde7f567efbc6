"""Outputs and scene input (issue 13): never over an input, `--overwrite` for an existing output, unique prediction names,
one complete run's file when two runs share an output, NaN pixels and integer nodata kept honest, and every bad input
one `error:` line with exit code 2 and no temp file left behind."""
import contextlib
import hashlib
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from emrdm.cli import main
from emrdm.data.folder import write_fake_folder
from emrdm.model import EMRDM, load_config

EMRDM_CMD = str(Path(sys.executable).parent / "emrdm")
RGB = {"data.use_nir": False, "network.in_channels": 6, "network.out_channels": 3}       # tiny-cuhk without NIR
FAST = ["--tile", "64", "--overlap", "16", "--steps", "1", "--quiet"]


def write(path, arr, dtype, nodata=None, **extra):
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=arr.shape[0], dtype=dtype,
                       crs="EPSG:32621", transform=from_origin(300000, 6000000, 30, 30), nodata=nodata, **extra) as dst:
        dst.write(arr.astype(dtype))
    return path


def litter(root) -> list[Path]:
    "Temp files left anywhere under `root`."
    return [p for p in Path(root).rglob("*") if ".part" in p.name]


def digest(root) -> dict:
    "{file: sha256} of every file under `root` (symlinks by target)."
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def cli(*argv) -> tuple[int, str, str]:
    "Run `emrdm argv` in this process: (exit code, stdout, stderr); an exception escaping main fails the test."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: rc = main([str(a) for a in argv])
        except SystemExit as e: rc = e.code                    # argparse's usage errors
    return rc, out.getvalue(), err.getvalue()


def stand_in(forward, cfg=None):
    "A tiny-cuhk RGB model whose network is `forward(x_in, c_noise)`: outputs under the test's control."
    class Net(torch.nn.Module):
        def forward(self, x_in, c_noise): return forward(x_in, c_noise)
    m = EMRDM(cfg or load_config("tiny-cuhk", RGB)).eval()
    m.net = Net()
    return m


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    "A checkpoint, a scene, a truncated scene, a 60000x60000 sparse scene and a GeoTIFF folder dataset."
    root = tmp_path_factory.mktemp("env")
    torch.manual_seed(0)
    EMRDM(load_config("tiny-cuhk", RGB)).save(root / "model.pt")
    scene = np.random.default_rng(1).integers(1, 255, (3, 64, 64))
    scene[:, :4, :6] = 0                                                       # a nodata corner
    write(root / "scene.tif", scene, "uint8", nodata=0)
    data = (root / "scene.tif").read_bytes()
    (root / "truncated.tif").write_bytes(data[:len(data) // 2])               # header fine, data cut
    write(root / "blank.tif", np.zeros((3, 64, 64)), "uint8", nodata=0)       # every pixel nodata
    with rasterio.open(root / "huge.tif", "w", driver="GTiff", height=60000, width=60000, count=3, dtype="uint8",
                       crs="EPSG:32621", transform=from_origin(0, 0, 30, 30), tiled=True, sparse_ok=True, nodata=0):
        pass                                                                   # no block written: a few KB on disk
    write_fake_folder(root / "F", n=2, bands=3, size=32, sar=False, mask=False)
    (root / "taken.tif").write_bytes(b"an earlier result")
    (root / "folder").mkdir()
    (root / "full").mkdir(); (root / "full/old.txt").write_text("earlier results")
    (root / "link.tif").symlink_to(root / "scene.tif")
    return root


# ---------------------------------------------------------------- defect 2: outputs never overwrite inputs

def test_remove_clouds_never_writes_over_its_input(env):
    before = digest(env)
    for out in (env / "scene.tif", env / "link.tif"):                          # the same path, and through a symlink
        rc, _, err = cli("remove-clouds", env / "scene.tif", "--checkpoint", env / "model.pt", "-o", out, *FAST)
        assert rc == 2 and err.startswith("error:") and "would overwrite the input" in err, err
    rc, _, err = cli("remove-clouds", env / "link.tif", "--checkpoint", env / "model.pt", "-o", env / "scene.tif", *FAST)
    assert rc == 2 and "would overwrite the input" in err, err
    assert digest(env) == before and not litter(env)


def test_existing_output_needs_overwrite(env, tmp_path):
    out = tmp_path / "clear.tif"
    out.write_bytes(b"an earlier result")
    args = ["remove-clouds", env / "scene.tif", "--checkpoint", env / "model.pt", "-o", out, *FAST]
    rc, _, err = cli(*args)
    assert rc == 2 and "exists" in err and "--overwrite" in err and out.read_bytes() == b"an earlier result", err
    rc, _, err = cli(*args, "--overwrite")
    assert rc == 0, err
    with rasterio.open(out) as a: assert a.count == 3 and a.shape == (64, 64)


def test_predict_refuses_an_output_folder_holding_inputs(env):
    before = digest(env / "F")
    for out in (env / "F/cloudy", env / "F"):
        for flags in ([], ["--overwrite"]):                                    # --overwrite never allows it
            rc, _, err = cli("predict", "--checkpoint", env / "model.pt", "--dataset", "folder", "--data", env / "F",
                             "--split", "all", "--out", out, "--steps", "1", "--quiet", *flags)
            assert rc == 2 and "would overwrite the input" in err, err
    assert digest(env / "F") == before and not litter(env / "F")


def test_predict_names_keep_the_whole_stem(env, tmp_path):
    "`scene.a.tif` and `scene.b.tif` are two predictions, not one `scene.tif` written twice."
    root = write_fake_folder(tmp_path / "D", n=2, bands=3, size=32, sar=False, mask=False)
    for kind in ("cloudy", "clear"):
        for i, name in enumerate(("scene.a.tif", "scene.b.tif")): (root / kind / f"scene_{i:02d}.tif").rename(root / kind / name)
    rc, _, err = cli("predict", "--checkpoint", env / "model.pt", "--dataset", "folder", "--data", root, "--split", "all",
                     "--out", tmp_path / "P", "--steps", "1", "--quiet")
    assert rc == 0, err
    names = sorted(p.name for p in (tmp_path / "P").iterdir())
    assert names == ["metrics.csv", "scene.a.png", "scene.a.tif", "scene.b.png", "scene.b.tif", "summary.csv"], names


class SameNames(torch.utils.data.Dataset):
    "Three samples whose paths share a file name in different folders (as Sen2_MTC tiles could); sample i is 16 + 8i wide."
    bands = ("R", "G", "B")
    paths = ["T1/x.tif", "T2/x.tif", "T3/x-1.tif"]
    def __len__(self): return 3
    def files(self, i): return []
    def __getitem__(self, i):
        mu = torch.zeros(3, 16, 16 + 8 * i)
        return {"mu": mu, "cond": mu.clone(), "path": self.paths[i]}


def test_predict_makes_colliding_names_unique():
    "A later sample whose name is taken gets `-<its dataset index>`; every prediction is kept."
    from emrdm.evaluate import predict
    import tempfile
    torch.manual_seed(0)
    model = EMRDM(load_config("tiny-cuhk", RGB)).eval()
    with tempfile.TemporaryDirectory() as d:
        predict(model, SameNames(), Path(d) / "P", steps=1, progress=False, metrics=False, device="cpu")
        names = sorted(p.name for p in (Path(d) / "P").glob("*.tif"))
        assert names == ["x-1-2.tif", "x-1.tif", "x.tif"], names
        widths = [rasterio.open(Path(d) / "P" / n).width for n in ("x.tif", "x-1.tif", "x-1-2.tif")]
        assert widths == [16, 24, 32]                                          # samples 0, 1, 2


# ---------------------------------------------------------------- defect 3: two runs, one output

def test_two_concurrent_runs_leave_one_complete_output(env, tmp_path):
    "Two processes write the same --out at once: both succeed, the file is exactly one of the runs' results, no temp left."
    from emrdm.inference import remove_clouds
    from emrdm.checkpoint import load
    model = load(env / "model.pt")
    refs = {}
    for seed in (1, 2):                                                         # what each run writes on its own
        remove_clouds(model, env / "scene.tif", tmp_path / f"ref{seed}.tif", tile=64, overlap=16, steps=3, seed=seed,
                      progress=False, device="cpu")
        with rasterio.open(tmp_path / f"ref{seed}.tif") as r: refs[seed] = r.read()
    assert not np.array_equal(refs[1], refs[2])
    out = tmp_path / "shared" / "clear.tif"
    cmd = lambda seed: [EMRDM_CMD, "remove-clouds", env / "scene.tif", "--checkpoint", env / "model.pt", "-o", out,
                        "--tile", "64", "--overlap", "16", "--steps", "3", "--seed", str(seed), "--quiet", "--overwrite"]
    runs = [subprocess.Popen(cmd(s), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in runs]
    assert all(rc == 0 for rc, _ in results), results
    with rasterio.open(out) as r: final = r.read()
    assert any(np.array_equal(final, ref) for ref in refs.values())
    assert not litter(tmp_path) and sorted(p.name for p in out.parent.iterdir()) == ["clear.tif"]


# ---------------------------------------------------------------- defect 9: NaN/inf without a nodata value

def _float_scene(path, nan_box=True):
    a = np.random.default_rng(3).uniform(20, 230, (3, 64, 64)).astype(np.float32)
    if nan_box: a[:, 10:20, 30:50] = np.nan
    a[1, 40, 40] = np.inf                                                      # one band of one pixel
    return write(path, a, "float32"), a


def test_nan_pixels_without_nodata_are_nodata_in_the_output(tmp_path):
    from emrdm.inference import remove_clouds
    torch.manual_seed(0)
    m = EMRDM(load_config("tiny-cuhk", RGB)).eval()
    path, a = _float_scene(tmp_path / "f.tif")
    out = remove_clouds(m, path, tmp_path / "o.tif", tile=64, overlap=16, steps=1, progress=False, device="cpu")
    invalid = ~np.isfinite(a).all(0)
    with rasterio.open(out) as o:
        assert o.nodata is not None and math.isnan(o.nodata)
        v = o.read()
    assert np.isnan(v).all(0)[invalid].all() and np.isfinite(v[:, ~invalid]).all()
    assert int(np.isnan(v).all(0).sum()) == int(invalid.sum()) == 201


def test_all_nodata_and_integer_output_without_nodata_are_errors(env, tmp_path):
    from emrdm.data.core import DataError
    from emrdm.inference import remove_clouds
    m = EMRDM(load_config("tiny-cuhk", RGB)).eval()
    nan = write(tmp_path / "nan.tif", np.full((3, 64, 64), np.nan), "float32")
    for scene in (nan, env / "blank.tif"):
        with pytest.raises(DataError, match="no valid pixel"):
            remove_clouds(m, scene, tmp_path / "o.tif", tile=64, overlap=16, steps=1, progress=False, device="cpu")
    path, _ = _float_scene(tmp_path / "f.tif")
    with pytest.raises(DataError, match="no nodata value"):                     # uint8 cannot mark the NaN pixels
        remove_clouds(m, path, tmp_path / "o.tif", tile=64, overlap=16, steps=1, progress=False, device="cpu",
                      out_dtype="uint8")
    assert not (tmp_path / "o.tif").exists() and not litter(tmp_path)


# ---------------------------------------------------------------- defect 12: valid values kept off nodata

def test_integer_output_keeps_valid_predictions_off_nodata(tmp_path):
    "Predictions that round to nodata=0 are nudged to 1: the output has exactly the input's nodata pixels."
    from emrdm.inference import remove_clouds
    scene = np.random.default_rng(4).integers(1, 255, (3, 64, 64))
    scene[:, 5:15, 5:25] = 0                                                    # 200 nodata pixels
    scene[0, 30:40, 30:40] = 0                                                  # one band zero: valid pixels
    path = write(tmp_path / "s.tif", scene, "uint8", nodata=0)
    dark = stand_in(lambda x, c: torch.full_like(x[:, :3], -30.0))             # predicts far below the range: clips to 0
    out = remove_clouds(dark, path, tmp_path / "o.tif", tile=64, overlap=16, steps=2, progress=False, device="cpu")
    with rasterio.open(out) as o: v = o.read()
    nodata_in = int((scene == 0).all(0).sum())
    print(f"nodata pixels: input {nodata_in}, output (all bands) {int((v == 0).all(0).sum())}, "
          f"output (any band) {int((v == 0).any(0).sum())}, valid values nudged to 1: {int((v[:, (scene != 0).any(0)] == 1).sum())}")
    assert nodata_in == 200
    assert int((v == 0).all(0).sum()) == int((v == 0).any(0).sum()) == nodata_in
    assert (v[:, (scene != 0).any(0)] == 1).all()                               # nudged to the nearest other value


# ---------------------------------------------------------------- defects 10 and 13: bad input, one line

RC = ["remove-clouds", "{scene}", "--checkpoint", "{ckpt}", "-o", "{tmp}/clear.tif"]
EVAL = ["--checkpoint", "{ckpt}", "--dataset", "folder", "--data", "{env}/F", "--split", "all", "--quiet"]
CASES = {                                                    # id: (argv, what the error says)
    "rc out is the input": (RC[:4] + ["-o", "{scene}"] + FAST, "would overwrite the input"),
    "rc out exists": (RC[:4] + ["-o", "{env}/taken.tif"] + FAST, "exists"),
    "rc out is a folder": (RC[:4] + ["-o", "{env}/folder"] + FAST, "is a folder"),
    "rc truncated GeoTIFF": (["remove-clouds", "{env}/truncated.tif", *RC[2:], *FAST], "truncated.tif"),
    "rc all nodata": (["remove-clouds", "{env}/blank.tif", *RC[2:], *FAST], "no valid pixel"),
    "rc tile 0": (RC + ["--tile", "0", "--quiet"], "--tile: must be at least 1"),
    "rc tile negative": (RC + ["--tile", "-64", "--quiet"], "--tile: must be at least 1"),
    "rc tile not a multiple": (RC + ["--tile", "63", "--overlap", "8", "--quiet"], "multiple of 2"),
    "rc overlap = tile": (RC + ["--tile", "64", "--overlap", "64", "--quiet"], "overlap"),
    "rc overlap > tile": (RC + ["--tile", "64", "--overlap", "100", "--quiet"], "overlap"),
    "rc overlap negative": (RC + ["--tile", "64", "--overlap", "-1", "--quiet"], "--overlap: must be at least 0"),
    "rc batch-size 0": (RC + FAST + ["--batch-size", "0"], "--batch-size: must be at least 1"),
    "rc steps 0": (RC + ["--tile", "64", "--overlap", "16", "--steps", "0", "--quiet"], "--steps: must be at least 1"),
    "rc max-work negative": (RC + FAST + ["--max-work", "-1"], "--max-work: must be at least 0"),
    "rc keep-clear without mask": (RC + FAST + ["--keep-clear"], "--keep-clear needs --mask"),
    "rc device cuda without CUDA": (RC + FAST + ["--device", "cuda"], "CUDA"),
    "rc 60000x60000 scene": (["remove-clouds", "{env}/huge.tif", *RC[2:], "--quiet"], "--max-work"),
    "predict out holds inputs": (["predict", *EVAL, "--out", "{env}/F/cloudy", "--steps", "1"], "would overwrite the input"),
    "predict out is the data root": (["predict", *EVAL, "--out", "{env}/F", "--steps", "1"], "would overwrite the input"),
    "predict out is a file": (["predict", *EVAL, "--out", "{env}/taken.tif", "--steps", "1"], "is a file"),
    "predict out not empty": (["predict", *EVAL, "--out", "{env}/full", "--steps", "1"], "exists"),
    "predict batch-size 0": (["predict", *EVAL, "--out", "{tmp}/p", "--batch-size", "0"], "--batch-size: must be at least 1"),
    "predict steps 0": (["predict", *EVAL, "--out", "{tmp}/p", "--steps", "0"], "--steps: must be at least 1"),
    "test out is a file": (["test", *EVAL, "--out", "{env}/taken.tif", "--steps", "1"], "is a file"),
    "test out not empty": (["test", *EVAL, "--out", "{env}/full", "--steps", "1"], "exists"),
    "test batch-size 0": (["test", *EVAL, "--out", "{tmp}/t", "--batch-size", "0"], "--batch-size: must be at least 1"),
    "test steps 0": (["test", *EVAL, "--out", "{tmp}/t", "--steps", "0"], "--steps: must be at least 1"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line(env, tmp_path, case):
    argv, message = CASES[case]
    if "cuda" in argv and torch.cuda.is_available(): pytest.skip("CUDA is available here")
    argv = [a.format(scene=env / "scene.tif", ckpt=env / "model.pt", env=env, tmp=tmp_path) for a in argv]
    before = digest(env)
    rc, out, err = cli(*argv)
    lines = err.strip().splitlines()
    assert rc == 2, (rc, out[-500:], err[-2000:])
    assert "Traceback" not in err and [l for l in lines if "error:" in l] == [lines[-1]], err
    if "must be at least" in message: assert lines[-1].startswith(f"emrdm {argv[0]}: error: argument"), err   # argparse
    else: assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert message in lines[-1], err
    assert digest(env) == before and not litter(env) and not litter(tmp_path)
    assert not (tmp_path / "clear.tif").exists()


def test_a_huge_scene_says_its_size_and_runs_only_when_allowed(env, tmp_path):
    "The refusal names the scene's size and the work (tiles x steps), before any pixel is read; --max-work allows a job."
    import time
    t = time.perf_counter()
    rc, _, err = cli("remove-clouds", env / "huge.tif", "--checkpoint", env / "model.pt", "-o", env / "never.tif", "--quiet")
    assert rc == 2 and time.perf_counter() - t < 10, err
    assert "60000x60000" in err and "103,684 tiles x 4 steps = 414,736 tile-steps" in err and "--max-work 414736" in err, err
    print(err.strip())
    small = ["remove-clouds", env / "scene.tif", "--checkpoint", env / "model.pt", "-o", tmp_path / "c.tif", "--tile", "64",
             "--overlap", "16", "--steps", "2", "--quiet"]                           # one tile x 2 steps
    rc, _, err = cli(*small, "--max-work", "1")
    assert rc == 2 and "1 tile x 2 steps = 2 tile-steps, above the limit of 1" in err, err
    assert cli(*small, "--max-work", "2")[0] == 0 and (tmp_path / "c.tif").is_file()


@pytest.fixture
def readonly_dir(tmp_path):
    "A folder nobody can write into: chmod for a user, a read-only tmpfs for root (who ignores permissions)."
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("running as root without permission to mount a read-only folder")
    try: yield d
    finally: subprocess.run(["umount", str(d)], capture_output=True)


def test_read_only_output_folder_is_one_line(env, readonly_dir):
    for argv in (["remove-clouds", env / "scene.tif", "--checkpoint", env / "model.pt", "-o", readonly_dir / "clear.tif", *FAST],
                 ["predict", "--checkpoint", env / "model.pt", "--dataset", "folder", "--data", env / "F", "--split", "all",
                  "--out", readonly_dir / "preds", "--steps", "1", "--quiet"]):
        rc, _, err = cli(*argv)
        assert rc == 2 and err.startswith("error:") and err.count("\n") == 1 and "not a writable folder" in err, err
    assert not list(readonly_dir.iterdir())


def test_one_error_line_through_the_console_script(env, tmp_path):
    "The same as a real process: a truncated GeoTIFF, exit code 2, one line, no temp file."
    out = subprocess.run([EMRDM_CMD, "remove-clouds", env / "truncated.tif", "--checkpoint", env / "model.pt",
                          "-o", tmp_path / "clear.tif", *FAST], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stderr.startswith("error:"), out.stderr[-2000:]
    assert "truncated.tif" in out.stderr and not litter(tmp_path) and not list(tmp_path.iterdir())
