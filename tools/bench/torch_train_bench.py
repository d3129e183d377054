#!/usr/bin/env python3
"""PyTorch reference for AnomalyVae's TrainingBenchmark (a speed comparison only, never a dependency).

Same model and configuration as AnomalyVae.Training.Engine.TrainingBenchmark: 100,000 synthetic rows x 32 numeric
features (+32 mask inputs), encoder 64-128-64-16, decoder 8-64-128-64 (Gaussian mean and clamped log-variance per
feature), tanh hidden units, KL to N(0, I), Adam (lr 1e-3), batch 256, 2 threads. Prints training rows/s over a few
epochs after one warm-up epoch.

Run with Debian's PyTorch: apt-get install -y python3-torch; /usr/bin/python3 training/bench/torch_train_bench.py [epochs] [threads]
Debian's torch uses the system BLAS; with the default reference BLAS it is several times slower, so install
libopenblas0-pthread first for a fair comparison. Run on a quiet machine: OpenMP threads degrade badly when another
process holds a core.
"""
import math
import sys
import time

try:
    import torch
except ImportError:
    print("torch_train_bench: PyTorch is not installed (apt-get install -y python3-torch, then run with /usr/bin/python3); skipping.")
    sys.exit(0)

ROWS, FEATURES, HIDDEN, LATENT, BATCH, THREADS = 100_000, 32, (128, 64), 8, 256, 2
LOGVAR_MIN, LOGVAR_MAX = -6.0, 4.0


def synthetic(rows, features, seed):
    g = torch.Generator().manual_seed(seed)
    loadings = torch.randn(features, 4, generator=g) * 0.8
    latent = torch.randn(rows, 4, generator=g)
    a = latent @ loadings.T
    return torch.tanh(a) * 1.5 + 0.2 * a + 0.1 * torch.randn(rows, features, generator=g)


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else THREADS
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x_all = synthetic(ROWS, FEATURES, 1)
    mask_all = torch.ones_like(x_all)
    enc = torch.nn.Sequential(
        torch.nn.Linear(2 * FEATURES, HIDDEN[0]), torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN[0], HIDDEN[1]), torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN[1], 2 * LATENT))
    dec = torch.nn.Sequential(
        torch.nn.Linear(LATENT, HIDDEN[1]), torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN[1], HIDDEN[0]), torch.nn.Tanh(),
        torch.nn.Linear(HIDDEN[0], 2 * FEATURES))
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    half_log_2pi = 0.5 * math.log(2 * math.pi)

    def step(x, m):
        opt.zero_grad(set_to_none=True)
        h = enc(torch.cat([x * m, m], dim=1))
        mu, logvar = h[:, :LATENT], h[:, LATENT:]
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        out = dec(z)
        mean, lv = out[:, :FEATURES], torch.clamp(out[:, FEATURES:], LOGVAR_MIN, LOGVAR_MAX)
        nll = (half_log_2pi + 0.5 * lv + 0.5 * (x - mean) ** 2 * torch.exp(-lv)) * m
        kl = 0.5 * (mu * mu + torch.exp(logvar) - 1 - logvar)
        loss = (nll.sum(1) + kl.sum(1)).mean()
        loss.backward()
        opt.step()
        return loss.item()

    batches = ROWS // BATCH

    def epoch():
        perm = torch.randperm(ROWS)
        total = 0.0
        for b in range(batches):
            idx = perm[b * BATCH:(b + 1) * BATCH]
            total += step(x_all[idx], mask_all[idx])
        return total / batches

    warm = epoch()
    start = time.perf_counter()
    loss = 0.0
    for _ in range(epochs):
        loss = epoch()
    elapsed = time.perf_counter() - start
    rows_per_second = epochs * batches * BATCH / elapsed
    print(f"PyTorch {torch.__version__} training benchmark: {ROWS:,} rows x {FEATURES} numeric, hidden 128-64, latent 8, "
          f"batch {BATCH}, {threads} threads, tanh")
    print(f"  loss after warm-up epoch {warm:.3f}, after {epochs} timed epochs {loss:.3f}")
    print(f"  {rows_per_second:,.0f} rows/s ({elapsed * 1000 / (epochs * batches):.3f} ms per step)")


if __name__ == "__main__":
    main()
