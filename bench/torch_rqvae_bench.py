#!/usr/bin/env python3
"""RQ-VAE epoch time in plain PyTorch: the comparison for `sidtool train --method rq-vae`.

  python3 -m pip install -r bench/requirements.txt
  python3 bench/rq_anchor.py gen --n 100000 --d 1024 --out /tmp/gmm.parquet
  python3 bench/torch_rqvae_bench.py --data /tmp/gmm.parquet --epochs 3      # this script
  sidtool train /tmp/gmm.parquet --out /tmp/q --method rq-vae --epochs 3 -vv  # sidtool
  python3 bench/torch_rqvae_bench.py --data /tmp/gmm.npy --epochs 3 --device cuda  # on a GPU

The model is the one sidtool trains with its defaults (docs/methods.md §3), written directly:
encoder MLP D → 512 → 256 → 128 → 32 with ReLU between layers (He-uniform weights, zero biases),
decoder mirrored; residual quantization of the latent over --codebook-sizes by exact nearest
codeword of the detached residual; straight-through estimator; loss = mse(dec(ẑ_st), x) +
Σ_l [mse(sg(r_{l-1}), e_l) + β·mse(r_{l-1}, sg(e_l))], β = 0.25, every term a mean over elements;
codebooks initialised level by level by k-means (k-means++ seeding, 20 Lloyd iterations) on the
latents of the first shuffled batch (at least max K rows); AdamW (lr 1e-3, weight decay 1e-4),
linear warm-up over 100 steps then cosine decay to a tenth over all epochs, global gradient-norm
clipping at 1.0; batches of 1024 rows in a fresh shuffled order each epoch. f32 throughout, on
--device: cpu (default) or cuda. The random draws (weights, shuffles, k-means++ seeding) come from
one CPU generator, so both devices start from the same model and see the same batches.

--data is a Parquet file (read with pyarrow) or a 2-D `.npy` array (np.load, cast to f32; no
pyarrow needed). On cuda the whole data matrix is moved to the GPU once, before training and
outside the epoch clock (at most 1M x 1024 f32 = 4 GB), as a tuned PyTorch user would do, so an
epoch measures compute rather than host-to-device copies; model, codebooks and every batch live
there, and the losses are summed on the device, read once per epoch.

It does not re-seed dead codes unless --reset-dead-codes is given (then: a code no example chose
during an epoch gets a random residual of its level from the epoch's last batch, as sidtool does).

An epoch's time covers the optimiser steps only (batch gather, forward, backward, clipping,
AdamW), like sidtool's `epoch_seconds` (in the quantizer's config.json); on cuda the clock is read
after `torch.cuda.synchronize()`. After the last epoch the whole file is encoded (not timed) for
the per-level codebook utilisation. Prints one line per epoch, a summary, and one JSON line (with
the device).
"""
import argparse
import json
import math
import statistics
import time


def parse_list(s):
    return [int(v) for v in s.split(",") if v.strip()]


def load(path, column):
    import numpy as np

    if path.endswith(".npy"):
        x = np.load(path)
        if x.ndim != 2:
            raise SystemExit(f"{path}: a 2-D array is needed, it has shape {x.shape}")
        return np.ascontiguousarray(x, dtype=np.float32)
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=[column])
    e = t.column(column).combine_chunks()
    x = e.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(t), -1)
    return np.ascontiguousarray(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True,
                    help="Parquet file with a FixedSizeList/List<Float32> vector column, or a 2-D .npy array")
    ap.add_argument("--column", default="embedding", help="the Parquet vector column")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--codebook-sizes", default="256,256,256")
    ap.add_argument("--hidden", default="512,256,128")
    ap.add_argument("--latent-dim", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.25)
    ap.add_argument("--warmup-steps", type=int, default=100)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--kmeans-iters", type=int, default=20)
    ap.add_argument("--reset-dead-codes", action="store_true")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()

    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)  # on the CPU whatever the device: same draws on both

    t0 = time.perf_counter()
    x = torch.from_numpy(load(a.data, a.column))
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = x.to(dev)  # the whole matrix once, outside the epoch clock
    sync()
    upload_s = time.perf_counter() - t0
    n, d = x.shape
    sizes = parse_list(a.codebook_sizes)
    hidden = parse_list(a.hidden)
    bs = min(a.batch_size, n)
    if max(sizes) > n:
        raise SystemExit(f"a codebook of {max(sizes)} codes needs at least that many rows; the file has {n}")

    def mlp(widths):
        layers = []
        for i, (inp, out) in enumerate(zip(widths[:-1], widths[1:])):
            lin = nn.Linear(inp, out)
            bound = math.sqrt(6.0 / inp)  # He-uniform, as sidtool
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=gen)
                lin.bias.zero_()
            layers.append(lin)
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers).to(dev)

    enc = mlp([d, *hidden, a.latent_dim])
    dec = mlp([a.latent_dim, *reversed(hidden), d])

    def nearest(r, e):
        dist = (r * r).sum(1, keepdim=True) - 2.0 * (r @ e.T) + (e * e).sum(1)
        return dist.argmin(1)

    def kmeans(r, k):
        # k-means++ seeding, then Lloyd; an empty cluster keeps its centre.
        m = r.shape[0]
        c = torch.empty(k, r.shape[1], device=r.device)
        c[0] = r[torch.randint(m, (1,), generator=gen).to(r.device)]
        d2 = ((r - c[0]) ** 2).sum(1)
        for j in range(1, k):
            p = d2.clamp_min(0).cpu()  # drawn with the CPU generator
            i = torch.multinomial(p / p.sum(), 1, generator=gen) if p.sum() > 0 else torch.randint(m, (1,), generator=gen)
            c[j] = r[i.to(r.device)]
            d2 = torch.minimum(d2, ((r - c[j]) ** 2).sum(1))
        for _ in range(a.kmeans_iters):
            assign = nearest(r, c)
            sums = torch.zeros_like(c).index_add_(0, assign, r)
            cnt = torch.bincount(assign, minlength=k).to(r.dtype)
            nz = cnt > 0
            c[nz] = sums[nz] / cnt[nz, None]
        return c, nearest(r, c)

    # Codebook init: k-means on the latents of the first shuffled batch, level by level.
    order = torch.randperm(n, generator=gen).to(dev)
    with torch.no_grad():
        r = enc(x[order[: min(n, max(bs, max(sizes)))]])
        books = []
        for k in sizes:
            c, assign = kmeans(r, k)
            r = r - c[assign]
            books.append(nn.Parameter(c))
    codebooks = nn.ParameterList(books)

    def forward(xb):
        z = enc(xb)
        r = z
        zq = torch.zeros_like(z)
        q_loss = z.new_zeros(())
        codes, residuals = [], []
        for e in codebooks:
            with torch.no_grad():
                c = nearest(r.detach(), e)
            q = e[c]
            q_loss = q_loss + F.mse_loss(q, r.detach()) + a.beta * F.mse_loss(r, q.detach())
            residuals.append(r.detach())
            codes.append(c)
            zq = zq + q.detach()
            r = r - q.detach()
        z_st = z + (zq - z).detach()
        recon = F.mse_loss(dec(z_st), xb)
        return recon + q_loss, recon, codes, residuals

    params = list(enc.parameters()) + list(dec.parameters()) + list(codebooks.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.weight_decay)
    steps_per_epoch = (n + bs - 1) // bs
    total = max(1, steps_per_epoch * a.epochs)

    def lr_at(step):
        if step < a.warmup_steps:
            return a.lr * (step + 1) / a.warmup_steps
        p = min(1.0, (step - a.warmup_steps) / max(1, total - a.warmup_steps))
        return a.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * p)))

    where = (f"{torch.cuda.get_device_name(dev)}, {n} x {d} moved there in {upload_s:.2f}s" if cuda
             else f"{torch.get_num_threads()} threads")
    print(f"torch {torch.__version__} on {a.device} ({where}); {n} x {d} rows read in {read_s:.2f}s; "
          f"MLP {d}->{'->'.join(map(str, hidden))}->{a.latent_dim}, codebooks {sizes}, batch {bs}", flush=True)
    epoch_s, step, resets = [], 0, 0
    for epoch in range(1, a.epochs + 1):
        order = torch.randperm(n, generator=gen).to(dev)
        used = [torch.zeros(k, dtype=torch.bool, device=dev) for k in sizes]
        sum_loss = torch.zeros((), dtype=torch.float64, device=dev)  # summed on the device, read once per epoch
        sum_recon = torch.zeros((), dtype=torch.float64, device=dev)
        last_res = None
        sync()
        clock = time.perf_counter()
        for b0 in range(0, n, bs):
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            xb = x[order[b0:b0 + bs]]
            loss, recon, codes, last_res = forward(xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
            opt.step()
            step += 1
            sum_loss += loss.detach() * xb.shape[0]
            sum_recon += recon.detach() * xb.shape[0]
            for u, c in zip(used, codes):
                u[c] = True
        if a.reset_dead_codes:
            with torch.no_grad():
                for e, u, res in zip(codebooks, used, last_res):
                    dead = (~u).nonzero().flatten()
                    if len(dead):
                        pick = torch.randint(res.shape[0], (len(dead),), generator=gen).to(dev)
                        e[dead] = res[pick]
                        resets += len(dead)
        sync()
        epoch_s.append(time.perf_counter() - clock)
        print(f"epoch {epoch}: {epoch_s[-1]:.2f} s, loss {sum_loss.item() / n:.5f}, "
              f"recon {sum_recon.item() / n:.5f}", flush=True)

    # Utilisation, collisions and reconstruction over the whole file (not timed).
    with torch.no_grad():
        all_codes, sq_err = [], 0.0
        for b0 in range(0, n, 8192):
            xb = x[b0:b0 + 8192]
            r = enc(xb)
            zq = torch.zeros_like(r)
            cs = []
            for e in codebooks:
                c = nearest(r, e)
                zq += e[c]
                r = r - e[c]
                cs.append(c)
            all_codes.append(torch.stack(cs, 1))
            sq_err += ((dec(zq) - xb) ** 2).sum().item()
        codes = torch.cat(all_codes).cpu().numpy()
    util = [float(np.unique(codes[:, l]).size / k) for l, k in enumerate(sizes)]
    collision_rate = 1.0 - np.unique(codes, axis=0).shape[0] / n
    med = statistics.median(epoch_s)
    print(f"median {med:.2f} s / epoch over {len(epoch_s)} epochs; utilisation per level "
          + ", ".join(f"{100 * u:.1f}%" for u in util)
          + f"; collision rate {collision_rate:.4f}; relative error {sq_err / float((x * x).sum().item()):.4f}")
    print(json.dumps({"tool": "torch-rqvae", "torch": torch.__version__, "device": a.device,
                      "threads": torch.get_num_threads(),
                      "n": n, "d": d, "codebook_sizes": sizes, "epochs": a.epochs,
                      "epoch_seconds": epoch_s, "median_epoch_s": med, "utilisation": util,
                      "collision_rate": collision_rate, "recon_mse": sq_err / (n * d),
                      "dead_code_resets": resets, "seed": a.seed}))


if __name__ == "__main__":
    main()
