"The authors' checkpoint layout for all four released configurations, written to disk and read back."
from pathlib import Path

import pytest
import torch

import emrdm
from emrdm.checkpoint import (CheckpointError, ema_key, fake_official_checkpoint, load,
                              read_key_table)

TABLES = Path(__file__).parent / "data" / "state_dict"


@pytest.mark.parametrize("table, config", [("cuhk", "cuhk"), ("cuhkv2", "cuhkv2"), ("sentinel", "sen12mscr"),
                                           ("sen2_mtc_new", "sen2mtc")])
def test_model_state_dict_is_the_released_layout(table, config):
    "Every network key, shape and kind, in the released order; EMA names for exactly the parameters."
    rows = read_key_table(TABLES / f"{table}.tsv")
    with torch.device("meta"):
        model = emrdm.EMRDM.from_config(config)
    params = dict(model.net.named_parameters())
    net_rows = [(k, s, kind) for k, s, kind in rows if k.startswith("model.diffusion_model.")]
    ours = [("model.diffusion_model." + k, tuple(v.shape), "param" if k in params else "buffer")
            for k, v in model.net.state_dict().items()]
    assert ours == net_rows
    assert {k for k, _, _ in rows if k.startswith("model_ema.")} == {ema_key(p) for p in params} | {"model_ema.decay", "model_ema.num_updates"}


def test_temporal_checkpoint_loads_ema_and_is_identified_by_shape():
    rows = read_key_table(TABLES / "sen2_mtc_new.tsv")
    ckpt = fake_official_checkpoint(rows, torch.Generator().manual_seed(0), ema_offset=2.0)
    model = load(ckpt)                                   # no cfg: the shapes say sen2mtc
    assert model.config.name == "sen2mtc" and model.temporal
    sd = ckpt["state_dict"]
    enc = model.net.temporal_encoder.attention_heads
    assert torch.equal(enc.Q.detach(), sd["model_ema.diffusion_modeltemporal_encoderattention_headsQ"])
    assert torch.equal(enc.fc1_k.bias.detach(), sd["model.diffusion_model.temporal_encoder.attention_heads.fc1_k.bias"] + 2)
    assert torch.equal(model.net.time_emb.weight, sd["model.diffusion_model.time_emb.weight"])
    # the loaded network runs at the released resolution's patch grid
    with torch.no_grad():
        out = model.net(torch.rand(1, 3, 7, 64, 64), torch.zeros(1))
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()


def test_lightning_file_round_trip_and_readable_errors(tmp_path):
    rows = read_key_table(TABLES / "sentinel.tsv")
    ckpt = fake_official_checkpoint(rows, torch.Generator().manual_seed(1))
    path = tmp_path / "sentinel.ckpt"
    torch.save(ckpt, path)
    model = emrdm.EMRDM.from_official_checkpoint(path)
    assert model.config.name == "sen12mscr" and model.checkpoint_info["epoch"] == 7
    with pytest.raises(CheckpointError, match="does not fit config 'sen2mtc'") as err:
        emrdm.EMRDM.from_official_checkpoint(path, "sen2mtc")
    assert "its shapes fit the released config 'sen12mscr'" in str(err.value)
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\)"):
        emrdm.EMRDM.from_official_checkpoint(tmp_path / "empty.ckpt")
    (tmp_path / "cut.ckpt").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        emrdm.EMRDM.from_official_checkpoint(tmp_path / "cut.ckpt")
