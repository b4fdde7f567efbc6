"""The paper's tables: nbs/experiments/tables.ipynb on fake runs laid out as evaluate.ipynb leaves them puts the numbers
of configs/paper/published.yaml beside ours, shows a missing run as missing, states each table's protocol and fills the
whole grid of the stochastic-sampler ablation; configs/paper/churn-*.yaml are that grid, and `make paper-eval`
evaluates every released row and every point of it with the right checkpoint."""
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emrdm.config import load_config
from emrdm.metrics import MetricsLog

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PUBLISHED = ROOT / "configs" / "paper" / "published.yaml"
PUB = yaml.safe_load(PUBLISHED.read_text())
FIGURE = PUB["churn_figure"]
SETTINGS = ("s_churn", "s_noise", "s_tmin", "s_tmax")
DROPPED = "churn-c2-n1.020-tmin0-tmax100"           # a point whose run the fake runs leave out
MISRECORDED = "churn-c10-n1.030-tmin0-tmax100"      # a point whose fake run recorded another S_noise


def figure_points() -> list[tuple[str, dict, list | None]]:
    "(sweep, settings, [PSNR, SSIM, LPIPS] or None) for every point of the published figure."
    points = []
    for s_churn, row in FIGURE["s_churn_sweep"]["points"].items():
        for s_noise, v in zip(FIGURE["s_churn_sweep"]["s_noise"], row):
            points.append(("s_churn_sweep", {"s_churn": float(s_churn), "s_noise": float(s_noise), "s_tmin": 0.0, "s_tmax": 100.0}, v))
    for sweep, swept in (("s_tmax_sweep", "s_tmax"), ("s_tmin_sweep", "s_tmin")):
        fixed = {k: float(v) for k, v in FIGURE[sweep]["fixed"].items()}
        points += [(sweep, {**fixed, swept: float(x)}, v) for x, v in FIGURE[sweep]["points"].items()]
    return points


def same_point(a: dict, b: dict) -> bool:
    "Whether two settings sample alike: equal, or both without churn (S_noise then plays no part)."
    return a == b or (a["s_churn"] == b["s_churn"] == 0 and a["s_tmin"] == b["s_tmin"] and a["s_tmax"] == b["s_tmax"])


def churn_configs() -> dict:
    "{run name: (parameters, settings)} of configs/paper/churn-*.yaml."
    out = {}
    for path in sorted((ROOT / "configs" / "paper").glob("churn-*.yaml")):
        params = yaml.safe_load(path.read_text())
        out[path.stem] = params, {k: float(params["overrides"][f"sampler.{k}"]) for k in SETTINGS}
    return out


# ---- the published numbers and the ablation's parameter files ------------------------------------------------------

def test_published_yaml_holds_the_figures_grids():
    "The grids the issue names: S_churn 0..10 by S_noise 1.000..1.030 at S_tmin 0, S_tmax 100; the threshold sweeps at S_churn 1."
    assert FIGURE["dataset"] == "sen2mtc" and FIGURE["steps"] == 5 and FIGURE["metrics"] == ["PSNR", "SSIM", "LPIPS"]
    sweep = FIGURE["s_churn_sweep"]
    assert [float(x) for x in sweep["points"]] == [0, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]
    assert sweep["s_noise"] == [1.0, 1.01, 1.02, 1.03] and sweep["fixed"] == {"s_tmin": 0, "s_tmax": 100}
    assert all(len(row) == 4 for row in sweep["points"].values())
    assert FIGURE["s_tmax_sweep"]["fixed"] == {"s_churn": 1, "s_noise": 1.0, "s_tmin": 0}
    assert FIGURE["s_tmin_sweep"]["fixed"] == {"s_churn": 1, "s_noise": 1.0, "s_tmax": 100}
    for spec in PUB["tables"].values():                          # every published row names a known source
        for row in [spec["emrdm"], *spec["emrdm_other"].values(), *spec["peers"].values()]:
            assert not row or row["source"] in PUB["sources"], row
    assert len(PUB["tables"]["sen2mtc"]["peers"]) == 12


def test_churn_configs_are_the_figures_grid_on_the_sen2mtc_model():
    configs = churn_configs()
    for name, (params, _) in configs.items():
        assert params["config"] == "sen2mtc" and params["data_subdir"] == "Sen2_MTC_New", name
        assert params["run_dir"] == f"runs/{name}" and params["overrides"]["sampler.steps"] == FIGURE["steps"], name
    points = figure_points()
    assert len(points) == 12 * 4 + 6 + 6
    for sweep, s, _ in points:                                  # every point has exactly one run ...
        hits = [name for name, (_, c) in configs.items() if same_point(c, s)]
        assert len(hits) == 1, (sweep, s, hits)
    for name, (_, c) in configs.items():                        # ... and every run is a point of the figure
        assert any(same_point(c, s) for _, s, _ in points), name
    assert len(configs) == 55                                  # 48 + 6 + 6 points, less 3 churn-free and 2 shared ones


# ---- tables.ipynb on fake runs -------------------------------------------------------------------------------------

def write_run(folder: Path, means: dict, config: str, sampler: dict, mode: str = "parity", checkpoint: str = "/ckpts/x.ckpt"):
    "A run as evaluate.ipynb leaves it: metrics.csv and summary.csv from emrdm's own writer, and metrics.json."
    log = MetricsLog()
    for i, d in enumerate((-1e-3, 1e-3)):                      # two images around each mean
        log.add(f"scene_{i}.tif", {k: v + d if math.isfinite(v) else v for k, v in means.items()})
    folder.mkdir(parents=True)
    log.to_csv(folder / "metrics.csv"); log.summary_csv(folder / "summary.csv")
    protocol = {"split": "test", "metric_mode": mode, "seed": 0, "sampler": sampler}
    (folder / "metrics.json").write_text(json.dumps({"config": config, "checkpoint": checkpoint, "split": "test", "mode": mode,
                                                     "protocol": protocol, **log.summary()}))


def released_sampler(config: str, **changes) -> dict:
    return {**dataclasses.asdict(load_config(config).sampler), **changes}


OURS = {"sen2mtc": {"PSNR": 19.9, "SSIM": 0.7, "LPIPS": 0.26, "RMSE": 0.1, "MAE": 0.08, "SAM": 3.0},
        "sen12mscr": {"PSNR": 31.5, "SSIM": 0.91, "SAM": 5.5, "MAE": 0.02, "RMSE": 0.03},
        "cuhk": {"PSNR": 25.0, "SSIM": 0.8, "LPIPS": math.nan, "RMSE": 0.05}}


STUDENT = {"PSNR": 19.7, "SSIM": 0.69, "LPIPS": 0.27, "RMSE": 0.11, "MAE": 0.09, "SAM": 3.1}


def encoded(s: dict) -> dict:
    "The fake means of a churn run: each metric a function of the point's settings, so a cell shows whose run it read."
    return {"PSNR": 10 + s["s_churn"], "SSIM": s["s_noise"] - 0.5, "LPIPS": s["s_tmin"] / 1000 + s["s_tmax"] / 10000}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    "Fake runs (cuhkv2 and one churn point left out), tables.ipynb run on them with papermill: (tables.md, out folder)."
    tmp = tmp_path_factory.mktemp("tables")
    runs = tmp / "runs"
    write_run(runs / "sen2mtc", OURS["sen2mtc"], "sen2mtc", released_sampler("sen2mtc"), checkpoint="/ckpts/sen2_mtc_new.ckpt")
    write_run(runs / "sen12mscr", OURS["sen12mscr"], "sen12mscr", released_sampler("sen12mscr"), mode="standard")
    write_run(runs / "cuhk", OURS["cuhk"], "cuhk", released_sampler("cuhk"))
    for name, (_, s) in churn_configs().items():
        if name == DROPPED: continue
        recorded = {**s, "s_noise": 1.0} if name == MISRECORDED else s
        write_run(runs / name, encoded(s), "sen2mtc", released_sampler("sen2mtc", steps=5, **recorded))
    write_run(runs / "steps-3", OURS["sen2mtc"], "sen2mtc", released_sampler("sen2mtc", steps=3))
    write_run(runs / "distill-sen2mtc", STUDENT, "sen2mtc", released_sampler("sen2mtc", steps=1))
    (runs / "ablation-alpha3.0").mkdir()                        # a run folder without results
    out = tmp / "out"
    res = subprocess.run([str(BIN / "papermill"), "--kernel", "python3", str(ROOT / "nbs" / "experiments" / "tables.ipynb"),
                          str(tmp / "tables.ipynb"), "-p", "runs_dir", str(runs), "-p", "out_dir", str(out),
                          "-p", "published", str(PUBLISHED), "--cwd", str(tmp)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    return (out / "tables.md").read_text(), out


def section(md: str, title: str) -> list[str]:
    "The lines under the heading `title` (## or ###) up to the next heading."
    lines = md.splitlines()
    start = next(i for i, l in enumerate(lines) if l.lstrip("#").strip() == title and l.startswith("#"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start + 1:end]


def table(lines: list[str]) -> list[dict]:
    "The pipe table among `lines`, one dict per row."
    rows = [[c.strip() for c in l.strip().strip("|").split("|")] for l in lines if l.startswith("|")]
    return [dict(zip(rows[0], r)) for r in rows[2:]]


def row(rows: list[dict], method: str) -> dict:
    return next(r for r in rows if r["method"] == method)


def test_each_dataset_table_shows_the_published_rows(rendered):
    md, _ = rendered
    for key, spec in PUB["tables"].items():
        rows = table(section(md, spec["title"]))
        assert list(rows[0]) == ["method", *spec["metrics"], "source"], key
        published = {"EMRDM (paper)": spec["emrdm"], **spec["emrdm_other"], **spec["peers"]}
        for method, values in published.items():
            r = row(rows, method)
            for m in spec["metrics"]:
                if m in values: assert float(r[m]) == values[m], (key, method, m)
                else: assert r[m] == "—", (key, method, m)
            assert r["source"] == values.get("source", "not found")
        assert [r["method"] for r in rows][-3:] == [f"EMRDM (ours, runs/{key})", "ours − paper",
                                                   f"EMRDM 1-step student (ours, runs/distill-{key})"]
    for key in ("sen12mscr", "sen2mtc", "cuhkv2"):            # the three with published numbers show them
        spec = PUB["tables"][key]
        paper = row(table(section(md, spec["title"])), "EMRDM (paper)")
        assert any(paper[m] != "—" for m in spec["metrics"]), key


def test_our_row_and_its_difference_to_the_papers(rendered):
    md, _ = rendered
    for key in ("sen2mtc", "sen12mscr"):
        spec = PUB["tables"][key]
        rows = table(section(md, spec["title"]))
        ours, diff = row(rows, f"EMRDM (ours, runs/{key})"), row(rows, "ours − paper")
        for m in spec["metrics"]:
            assert float(ours[m]) == pytest.approx(OURS[key][m], abs=1e-3), (key, m)
            paper = spec["emrdm"].get(m)
            if paper is None: assert diff[m] == "—"
            else: assert float(diff[m]) == pytest.approx(OURS[key][m] - paper, abs=1e-3), (key, m)


def test_the_students_row_reads_its_distillation_run(rendered):
    md, _ = rendered
    rows = table(section(md, PUB["tables"]["sen2mtc"]["title"]))
    student = row(rows, "EMRDM 1-step student (ours, runs/distill-sen2mtc)")
    for m in PUB["tables"]["sen2mtc"]["metrics"]: assert float(student[m]) == pytest.approx(STUDENT[m], abs=1e-3), m
    cuhk = row(table(section(md, "CUHK-CR1")), "EMRDM 1-step student (ours, runs/distill-cuhk)")
    assert set(v for k, v in cuhk.items() if k not in ("method", "source")) == {"missing"}


def test_a_missing_run_shows_as_missing_not_zero(rendered):
    md, _ = rendered
    spec = PUB["tables"]["cuhkv2"]
    rows = table(section(md, spec["title"]))
    for method in ("EMRDM (ours, runs/cuhkv2)", "ours − paper"):
        assert [row(rows, method)[m] for m in spec["metrics"]] == ["missing"] * len(spec["metrics"])
    assert not any(c.startswith(("0.0", "+0.0", "-0.0")) for r in rows for c in r.values())
    cuhk = row(table(section(md, "CUHK-CR1")), "EMRDM (ours, runs/cuhk)")
    assert cuhk["LPIPS"] == "n/a" and float(cuhk["PSNR"]) == pytest.approx(25.0, abs=1e-3)   # computed no LPIPS: not missing
    other = row([{"method": r["run"], **r} for r in table(section(md, "Ablations"))], "ablation-alpha3.0")
    assert other["PSNR"] == other["images"] == "missing"


def test_the_protocol_is_stated_under_each_table(rendered):
    md, _ = rendered
    notes = {key: next(l for l in section(md, spec["title"]) if l.startswith("**Protocol.**")) for key, spec in PUB["tables"].items()}
    for key, note in notes.items():
        assert "test split" in note and "metric mode parity" in note and f"`{PUB['tables'][key]['config']}`" in note, note
    assert "seed 0" in notes["sen2mtc"] and "sen2_mtc_new.ckpt" in notes["sen2mtc"]
    assert notes["sen2mtc"].endswith("a reproduction (the paper's split, metric mode and sampler).")
    assert "metric mode standard" in notes["sen12mscr"] and notes["sen12mscr"].endswith("a new experiment, not a reproduction (not the paper's metric mode).")
    assert "Ours: *missing*" in notes["cuhkv2"]


def cells(cell: str) -> tuple[str, str]:
    paper, ours = cell.split(" / ")
    return paper, ours


def test_the_sampler_ablation_grid_is_complete_with_the_figures_values(rendered):
    md, _ = rendered
    configs = churn_configs()
    run_of = lambda s: next(name for name, (_, c) in configs.items() if same_point(c, s))
    grids = {m: {r["S_churn"]: r for r in table(section(md, f"S_churn × S_noise at S_tmin 0, S_tmax 100: {m}, paper / ours"))}
             for m in FIGURE["metrics"]}
    sweeps = {sweep: {r[label]: r for r in table(section(md, f"{label} at {fixed}: paper / ours"))}
              for sweep, label, fixed in (("s_tmax_sweep", "S_tmax", "S_churn 1, S_noise 1, S_tmin 0"),
                                          ("s_tmin_sweep", "S_tmin", "S_churn 1, S_noise 1, S_tmax 100"))}
    assert all(len(g) == 12 and all(len(r) == 5 for r in g.values()) for g in grids.values())
    assert all(len(t) == 6 for t in sweeps.values())
    for sweep, s, values in figure_points():
        for i, m in enumerate(FIGURE["metrics"]):
            if sweep == "s_churn_sweep": cell = grids[m][f"{s['s_churn']:g}"][f"S_noise {s['s_noise']:.3f}"]
            else: cell = sweeps[sweep][f"{s[sweep.removesuffix('_sweep')]:g}"][m]
            paper, ours = cells(cell)
            if values is None: assert paper == "—", (s, m)
            else: assert float(paper) == values[i], (s, m)
            if run_of(s) == DROPPED: assert ours == "missing", (s, m)
            else: assert float(ours) == pytest.approx(encoded({**s, "s_noise": 1.0} if s["s_churn"] == 0 else s)[m], abs=1e-3), (s, m)
    note = next(l for l in section(md, "Stochastic sampler (Sen2_MTC_New, 5 Euler steps)") if l.startswith("**Protocol.**"))
    assert "54 of 55 runs" in note and f"*missing*: {DROPPED})" in note and note.endswith(f"not their point's: {MISRECORDED}.")


def test_the_tables_are_written_as_latex_too(rendered):
    _, out = rendered
    tex = (out / "tables.tex").read_text()
    assert tex.count("\\begin{tabular}") == len(PUB["tables"]) + len(FIGURE["metrics"]) + 2 + 2   # + ablations, steps


# ---- make paper-eval -----------------------------------------------------------------------------------------------

def fake_repo(tmp_path):
    "The Makefile and configs/paper in a folder, with a venv whose papermill only logs its arguments to papermill.log: (repo, venv)."
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "configs" / "paper", work / "configs" / "paper")
    shutil.copy2(ROOT / "Makefile", work)
    for f in ("setup.py", "settings.ini", ".ci/constraints-cpu.txt"):          # what the install target checks, all old
        (work / f).parent.mkdir(parents=True, exist_ok=True); (work / f).write_text(""); os.utime(work / f, (0, 0))
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
    (venv / "bin" / "papermill").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "papermill.log"}\n')
    for tool in ("python", "papermill"): (venv / "bin" / tool).chmod(0o755)
    os.utime(venv / "bin" / "python", (0, 0))
    (venv / ".installed").write_text("")
    return work, venv


def test_make_paper_eval_runs_every_released_row_and_the_ablation(tmp_path):
    "With a logging stand-in for papermill: the released rows on their checkpoints, steps-* and churn-* on Sen2_MTC_New's, done runs kept, then the tables."
    work, venv = fake_repo(tmp_path)
    (work / "runs" / "steps-3").mkdir(parents=True); (work / "runs" / "steps-3" / "summary.csv").write_text("metric,value\n")
    res = subprocess.run(["make", "-s", "paper-eval", "DATA=/data", "CKPTS=/ckpts", f"VENV={venv}"], cwd=work,
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    calls = [l.split() for l in (tmp_path / "papermill.log").read_text().splitlines()]
    evaluated = {c[c.index("-f") + 1]: c[c.index("checkpoint") + 1] for c in calls if "nbs/experiments/evaluate.ipynb" in c}
    assert len(evaluated) == len(calls) - 1                                    # one call per run, then the tables
    for run, ckpt in {"cuhk": "cuhk", "cuhkv2": "cuhkv2", "sen12mscr": "sentinel", "sen2mtc": "sen2_mtc_new"}.items():
        assert evaluated.pop(f"configs/paper/{run}.yaml") == f"/ckpts/{ckpt}.ckpt"
    for name in churn_configs():
        assert evaluated.pop(f"configs/paper/{name}.yaml") == "/ckpts/sen2_mtc_new.ckpt"
    steps = {f"configs/paper/{p.name}" for p in (ROOT / "configs" / "paper").glob("steps-*.yaml")} - {"configs/paper/steps-3.yaml"}
    assert set(evaluated) == steps and set(evaluated.values()) == {"/ckpts/sen2_mtc_new.ckpt"}
    assert "runs/steps-3: evaluated already, kept" in res.stdout
    assert "nbs/experiments/tables.ipynb" in calls[-1] and calls[-1][-3:] == ["-p", "runs_dir", "runs"]


def test_make_paper_distill_distils_every_released_checkpoint(tmp_path):
    "With a logging stand-in for papermill: one train.ipynb run per released checkpoint, with its teacher and its parameters file; done runs kept."
    work, venv = fake_repo(tmp_path)
    done = work / "runs" / "distill-cuhkv2" / "eval"
    done.mkdir(parents=True); (done / "summary.csv").write_text("metric,value\n")
    res = subprocess.run(["make", "-s", "paper-distill", "DATA=/data", "CKPTS=/ckpts", f"VENV={venv}"], cwd=work,
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    calls = [l.split() for l in (tmp_path / "papermill.log").read_text().splitlines()]
    runs = {c[c.index("-f") + 1]: c[c.index("teacher") + 1] for c in calls if "nbs/experiments/train.ipynb" in c}
    assert runs == {"configs/paper/distill-cuhk.yaml": "/ckpts/cuhk.ckpt", "configs/paper/distill-sen12mscr.yaml": "/ckpts/sentinel.ckpt",
                    "configs/paper/distill-sen2mtc.yaml": "/ckpts/sen2_mtc_new.ckpt"}
    assert "runs/distill-cuhkv2: distilled already, kept" in res.stdout
    assert "nbs/experiments/tables.ipynb" in calls[-1]
    for name in ("cuhk", "cuhkv2", "sen12mscr", "sen2mtc"):
        p = yaml.safe_load((ROOT / "configs" / "paper" / f"distill-{name}.yaml").read_text())
        base = yaml.safe_load((ROOT / "configs" / "paper" / f"{name}.yaml").read_text())
        assert (p["config"], p["data_subdir"], p["nir_subdir"], p["run_dir"], p["student_steps"]) == \
               (name, base["data_subdir"], base["nir_subdir"], f"runs/distill-{name}", 1)
