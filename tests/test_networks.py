"Networks and model across modules: backends, bf16 autocast, torch.compile, batching, gradients through attention."
import pytest
import torch

import emrdm
from emrdm.nn.attention import na2d_torch, neighborhood_attention
from emrdm.nn.hdit import SelfAttentionBlock


def randomised(model, seed=0):
    "Small positive random weights everywhere (zero-initialised projections included) so outputs are non-trivial."
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters(): torch.nn.init.uniform_(p, -0.1, 0.1, generator=g)
    for m in model.modules():
        if isinstance(m, SelfAttentionBlock): m.scale.data.uniform_(5, 15, generator=g)
    return model.eval()


def inputs(model, B=2, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    n = model.config.network
    lead = (B, 3) if model.temporal else (B,)
    x = torch.randn(*lead, n.out_channels, size, size, generator=g)
    cond = torch.randn(*lead, n.in_channels - n.out_channels, size, size, generator=g)
    return x, cond, torch.tensor([0.05, 3.0][:B])


@pytest.mark.parametrize("name", ["tiny-cuhk", "tiny-sen12mscr", "tiny-sen2mtc"])
def test_bf16_autocast_close_to_fp32(name):
    model = randomised(emrdm.EMRDM.from_config(name))
    x, cond, sigma = inputs(model)
    with torch.no_grad():
        ref = model.denoise(x, sigma, cond)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.denoise(x, sigma, cond)
    assert torch.isfinite(low).all()
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.05, rel


def test_compile_fullgraph_matches_eager():
    model = randomised(emrdm.EMRDM.from_config("tiny-cuhk"))
    x, cond, sigma = inputs(model)
    x_in = torch.cat([x, cond], 1)
    c_noise = sigma.log() / 4
    with torch.no_grad():
        eager = model.net(x_in, c_noise)
        compiled = torch.compile(model.net, fullgraph=True)(x_in, c_noise)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


def test_temporal_batch_of_two_equals_two_batches_of_one():
    "Each sample's frames use that sample's noise level (the authors' tiling mixed them up for B > 1)."
    model = randomised(emrdm.EMRDM.from_config("tiny-sen2mtc"))
    x, cond, sigma = inputs(model)
    with torch.no_grad():
        both = model.denoise(x, sigma, cond)
        one = torch.cat([model.denoise(x[i:i + 1], sigma[i:i + 1], cond[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(both, one, rtol=1e-4, atol=1e-5)
    assert (both[0] - both[1]).abs().mean() > 1e-3


def test_gradients_flow_through_pure_torch_neighbourhood_attention():
    model = randomised(emrdm.EMRDM.from_config("tiny-cuhk")).train()
    x, cond, _ = inputs(model)
    loss = model.loss(x, x, cond, generator=torch.Generator().manual_seed(0)).mean()
    loss.backward()
    qkv = model.net.down_levels[0][0].self_attn.qkv_proj.weight    # a neighbourhood-attention level
    assert qkv.grad is not None and qkv.grad.abs().sum() > 0


def test_na2d_is_practical_at_256x256_tokens():
    "Level 0 of the released mono-temporal models: 256 x 256 tokens, 2 heads of 64. Forward and backward on a CPU."
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 256, 256, 2, 64, generator=g, requires_grad=True) for _ in range(3))
    out = neighborhood_attention(q, k, v, 7)
    out.square().mean().backward()
    assert out.shape == q.shape and torch.isfinite(q.grad).all()
    # spot-check three queries (corner, edge, interior) against their explicit 7x7 windows
    for i, j in [(0, 0), (0, 130), (100, 200)]:
        y0, x0 = max(0, min(i - 3, 249)), max(0, min(j - 3, 249))
        keys = k[0, y0:y0 + 7, x0:x0 + 7].reshape(49, 2, 64)
        vals = v[0, y0:y0 + 7, x0:x0 + 7].reshape(49, 2, 64)
        w = torch.einsum("hd,nhd->hn", q[0, i, j], keys).softmax(-1)
        torch.testing.assert_close(out[0, i, j], torch.einsum("hn,nhd->hd", w, vals), rtol=1e-4, atol=1e-5)
