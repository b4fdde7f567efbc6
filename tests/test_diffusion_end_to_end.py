"The diffusion core with a real, trainable torch network: loss, gradients, sampling, batching."
import math

import pytest
import torch
from torch import nn

from emrdm.core import toy_scene
from emrdm.diffusion import residual_denoise, residual_loss
from emrdm.precond import ResidualPrecond
from emrdm.samplers import euler_sampler, heun_sampler, residual_sample
from emrdm.schedule import LogNormalSigma, MeanReversion, NoMeanReversion, karras_sigmas


class TinyNet(nn.Module):
    "A small conv net with the calling convention of the denoiser: net(x_in [B, C+Cc, H, W], c_noise [B])."
    def __init__(self, c_in=6, c_out=3, width=32):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in + 1, width, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, c_out, 3, padding=1))
    def forward(self, x_in, c_noise):
        emb = c_noise[:, None, None, None].expand(-1, 1, *x_in.shape[-2:])
        return self.body(torch.cat([x_in, emb], 1))


class TemporalTinyNet(TinyNet):
    "Per-date features averaged over dates: [B, T, C+Cc, H, W] -> [B, C, H, W]."
    def forward(self, x_in, c_noise):
        B, T = x_in.shape[:2]
        out = super().forward(x_in.flatten(0, 1), c_noise.repeat_interleave(T))
        return out.unflatten(0, (B, T)).mean(1)


def test_training_reduces_loss_and_sampling_recovers_the_clear_image():
    torch.manual_seed(0)
    clear, cloudy = toy_scene(32, seed=1)
    batch_x0, batch_mu = clear.repeat(4, 1, 1, 1), cloudy.repeat(4, 1, 1, 1)
    net, sch, pre = TinyNet(), MeanReversion(3.0), ResidualPrecond()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    dist = LogNormalSigma(-1.2, 1.2)
    eval_sigma, eval_noise = dist.sample(64, generator=torch.Generator().manual_seed(1)), None

    def eval_loss():
        with torch.no_grad():
            gg = torch.Generator().manual_seed(2)
            return torch.stack([residual_loss(net, clear, cloudy, cloudy, schedule=sch, precond=pre, sigma=s[None], generator=gg)
                                for s in eval_sigma]).mean().item()

    before = eval_loss()
    for _ in range(150):
        loss = residual_loss(net, batch_x0, batch_mu, batch_mu, schedule=sch, precond=pre, sigma_dist=dist, generator=g)
        opt.zero_grad(); loss.mean().backward(); opt.step()
    after = eval_loss()
    assert after < 0.5 * before, (before, after)

    den = lambda x, sigma, cond: residual_denoise(net, x, sigma, cond, schedule=sch, precond=pre)
    with torch.no_grad():
        out = euler_sampler(den, cloudy, karras_sigmas(4), sch, cond=cloudy, generator=torch.Generator().manual_seed(0))
    err_out, err_in = (out - clear).abs().mean().item(), (cloudy - clear).abs().mean().item()
    assert err_out < 0.6 * err_in, (err_out, err_in)


@pytest.mark.parametrize("temporal", [False, True])
def test_gradients_reach_every_parameter_and_inputs_stay_put(temporal):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 3, 8, 8, generator=g)
    mu = torch.randn(2, 3, 3, 8, 8, generator=g) if temporal else torch.randn(2, 3, 8, 8, generator=g)
    cond = torch.cat([mu, torch.randn(mu.shape[:-3] + (1, 8, 8), generator=g)], -3)     # cloudy + a NIR-like band
    net = (TemporalTinyNet if temporal else TinyNet)(c_in=3 + 4)
    snap = [t.clone() for t in (x0, mu, cond)]
    loss = residual_loss(net, x0, mu, cond, schedule=MeanReversion(1.0), precond=ResidualPrecond(), generator=g)
    assert loss.shape == (2,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    for a, b in zip((x0, mu, cond), snap): assert torch.equal(a, b)


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_sampler_with_network_is_batch_invariant(solver):
    "A real network, churn on, per-sample generators: the batch equals the samples run one by one."
    torch.manual_seed(0)
    net, sch, pre = TinyNet(c_in=6).eval(), MeanReversion(3.0), ResidualPrecond()
    den = lambda x, sigma, cond: residual_denoise(net, x, sigma, cond, schedule=sch, precond=pre)
    mu = torch.randn(3, 3, 8, 8)
    gens = lambda: [torch.Generator().manual_seed(7 + i) for i in range(3)]
    kw = dict(s_churn=2.5, s_noise=1.0, solver=solver)
    with torch.no_grad():
        batched = residual_sample(den, mu, 4, sch, cond=mu, generator=gens(), **kw)
        for i in range(3):
            alone = residual_sample(den, mu[i:i + 1], 4, sch, cond=mu[i:i + 1], generator=[gens()[i]], **kw)
            torch.testing.assert_close(batched[i:i + 1], alone, rtol=1e-4, atol=1e-4)


def test_no_mean_reversion_is_plain_edm():
    "With s = 1 and sigma_mu = rho = 0 the scalings are EDM's (Karras et al. 2022, Table 1)."
    sigma = torch.logspace(-3, 2, 20, dtype=torch.float64)
    sd = 0.5
    c = ResidualPrecond(sigma_data=sd, sigma_mu=0.0, rho=0.0)(sigma, NoMeanReversion().r(sigma))
    torch.testing.assert_close(c.c_skip, sd**2 / (sigma**2 + sd**2))
    torch.testing.assert_close(c.c_out, sigma * sd / (sigma**2 + sd**2).sqrt())
    torch.testing.assert_close(c.c_in, 1 / (sigma**2 + sd**2).sqrt())
    torch.testing.assert_close(c.c_noise, sigma.log() / 4)


def test_heun_uses_2n_minus_1_evaluations_and_euler_n():
    calls = []
    den = lambda x, sigma, cond: (calls.append(1), torch.zeros_like(x))[1]
    mu = torch.randn(1, 3, 4, 4)
    euler_sampler(den, mu, 5, MeanReversion(3.0)); n_euler = len(calls); calls.clear()
    heun_sampler(den, mu, 5, MeanReversion(3.0)); n_heun = len(calls)
    assert (n_euler, n_heun) == (5, 9)
