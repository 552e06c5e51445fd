"""Bi-level routing attention: time (forward, forward + backward) and peak memory at biformer_tiny's
routed stage shapes, for three formulations of the same attention:

- ``ours``: ``attnzoo.kernels.bilevel_routing_attention`` (the Triton kernel on CUDA, no gathered copy;
  on CPU the dispatch rule picks the torch reference, which itself gathers);
- ``gather``: a re-implementation of the official ``ops/bra_legacy.py`` path (regions in a
  ``[B, R, T, C]`` layout, ``torch.gather`` of the top-k regions' K/V into a k-fold copy);
- ``flex``: FlexAttention over the region-ordered sequence with a block mask built from the routing
  table (compiled on CUDA; on CPU eager FlexAttention materialises the dense score matrix, so it is
  only run at small settings there).

Routing (region means, affinity, top-k) is computed once per shape and excluded from the timings.

    python benchmarks/bench_bilevel_routing.py                 # CUDA: sizes 224 512, batch 8
    python benchmarks/bench_bilevel_routing.py --sizes 224 --batch 1 --reps 2   # CPU smoke run
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from attnzoo.kernels.bilevel_routing import bilevel_routing, bilevel_routing_attention, region_grid
from attnzoo.kernels.bilevel_routing.reference import _to_regions, _valid_tokens

# biformer_tiny's routed stages: (stride, width, heads, topk); head_dim 32, n_win 7, scale width^-0.5
STAGES = ((4, 64, 2, 1), (8, 128, 4, 4), (16, 256, 8, 16))


def problem(size: int, stride: int, width: int, heads: int, topk: int, batch: int, device, dtype):
    side = math.ceil(size / stride)
    gen = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(batch, heads, side, side, width // heads, generator=gen) for _ in range(3))
    q, k, v = (t.to(device, dtype) for t in (q, k, v))
    rh, rw, _, _ = region_grid(side, side, 7)
    flat = lambda t: t.permute(0, 2, 3, 1, 4).reshape(batch, side, side, width)  # noqa: E731
    scale = width**-0.5
    idx = bilevel_routing(flat(q), flat(k), (rh, rw), topk, scale)
    return (q, k, v, idx), (rh, rw), scale


def run_ours(q, k, v, idx, region, scale):
    return bilevel_routing_attention(q, k, v, idx, region, scale)


def run_gather(q, k, v, idx, region, scale):
    """The official formulation: channels-last regions, heads inside channels, k-fold gathered K/V."""
    b, m, h, w, d = q.shape
    rh, rw = region
    nrh, nrw = math.ceil(h / rh), math.ceil(w / rw)
    to_r = lambda t: _to_regions(t.permute(0, 2, 3, 1, 4).reshape(b, h, w, m * d), rh, rw, nrh, nrw)  # noqa: E731
    q_r, kv_r = to_r(q), torch.cat([to_r(k), to_r(v)], dim=-1)  # [B, R, T, C], [B, R, T, 2C]
    nr, t, c2 = kv_r.shape[1:]
    topk = idx.shape[-1]
    kv_sel = torch.gather(
        kv_r.view(b, 1, nr, t, c2).expand(-1, nr, -1, -1, -1),
        dim=2,
        index=idx.view(b, nr, topk, 1, 1).expand(-1, -1, -1, t, c2),
    )  # [B, R, K, T, 2C]: the k-fold copy
    k_sel, v_sel = kv_sel.split([m * d, m * d], dim=-1)
    k_sel = k_sel.reshape(b * nr, topk * t, m, d).permute(0, 2, 3, 1)
    v_sel = v_sel.reshape(b * nr, topk * t, m, d).transpose(1, 2)
    q_r = q_r.reshape(b * nr, t, m, d).transpose(1, 2)
    valid = _valid_tokens(h, w, rh, rw, nrh, nrw, q.device)[idx].reshape(b * nr, 1, 1, topk * t)
    attn = ((q_r * scale) @ k_sel).masked_fill(~valid, float("-inf")).softmax(-1)
    return attn @ v_sel  # region layout; un-regioning is layout work both sides skip


def make_flex(q, idx, region, compiled: bool):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    b, _, h, w, _ = q.shape
    rh, rw = region
    nrh, nrw = math.ceil(h / rh), math.ceil(w / rw)
    t = rh * rw
    nr = nrh * nrw
    routed = torch.zeros(b, nr, nr, dtype=torch.bool, device=q.device).scatter_(2, idx, True)
    valid = _valid_tokens(h, w, rh, rw, nrh, nrw, q.device).flatten()

    def mask_mod(bi, hi, qi, ki):
        return routed[bi, qi // t, ki // t] & valid[ki]

    n = nr * t
    block = 128 if q.is_cuda else n
    mask = create_block_mask(mask_mod, b, None, n, n, device=q.device, BLOCK_SIZE=block)
    attend = torch.compile(flex_attention) if compiled else flex_attention

    def run(q, k, v, idx, region, scale):
        to_seq = lambda x: _to_regions(x, rh, rw, nrh, nrw).flatten(2, 3)  # noqa: E731  [B, M, N, D]
        return attend(to_seq(q), to_seq(k), to_seq(v), block_mask=mask, scale=scale)

    return run


def measure(fn, args, backward: bool, reps: int, device) -> tuple[float, float]:
    """(median ms, peak MiB on CUDA else nan)."""
    inputs = [a.detach().requires_grad_(backward) if a.is_floating_point() else a for a in args[:4]]
    rest = args[4:]

    def once():
        out = fn(*inputs, *rest)
        if backward:
            out.backward(torch.ones_like(out))
        return out

    once()  # warm-up (compiles kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        with torch.no_grad() if not backward else torch.enable_grad():
            once()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return sorted(times)[len(times) // 2], peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    parser.add_argument("--batch", type=int, default=None, help="default 8 on CUDA, 1 on CPU")
    parser.add_argument("--reps", type=int, default=None, help="default 20 on CUDA, 2 on CPU")
    parser.add_argument("--impls", nargs="+", default=["ours", "gather", "flex"])
    parser.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--flex-max-tokens", type=int, default=4096, help="CPU only: skip eager flex above")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    if cuda:  # one compiled flex_attention per shape and grad mode: don't fall back to eager after 8
        for knob in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, 1024)
    batch = args.batch or (8 if cuda else 1)
    reps = args.reps or (20 if cuda else 2)
    dtype = getattr(torch, args.dtype or ("bfloat16" if cuda else "float32"))
    ours = "ours (triton)" if cuda else "ours (= torch reference on CPU)"
    print(
        f"device {torch.cuda.get_device_name() if cuda else 'cpu'}, dtype {dtype}, batch {batch}, reps {reps}"
    )
    print(
        f"{'input':>5} {'stage':>5} {'map':>7} {'k':>3} {'impl':<32} "
        f"{'fwd ms':>9} {'fwd+bwd ms':>11} {'peak MiB':>9}"
    )
    for size in args.sizes:
        for si, (stride, width, heads, topk) in enumerate(STAGES):
            (q, k, v, idx), region, scale = problem(size, stride, width, heads, topk, batch, device, dtype)
            side = q.shape[2]
            impls = {}
            if "ours" in args.impls:
                impls[ours] = run_ours
            if "gather" in args.impls:
                impls["official gather"] = run_gather
            if "flex" in args.impls:
                nr_t = idx.shape[1] * region[0] * region[1]
                if cuda or nr_t <= args.flex_max_tokens:
                    try:
                        impls["flex (block mask)"] = make_flex(q, idx, region, compiled=cuda)
                    except Exception as err:  # noqa: BLE001  (report, keep benchmarking the others)
                        print(f"  flex unavailable: {type(err).__name__}: {err}")
                else:
                    print(f"  {size} stage {si + 1}: eager CPU flex skipped ({nr_t} tokens, dense scores)")
            for name, fn in impls.items():
                row = f"{size:>5} {si + 1:>5} {f'{side}x{side}':>7} {idx.shape[-1]:>3} {name:<32}"
                cells, peaks = [], []
                for backward, width_ in ((False, 9), (True, 11)):
                    try:
                        ms, peak = measure(fn, (q, k, v, idx, region, scale), backward, reps, device)
                        cells.append(f"{ms:>{width_}.2f}")
                        peaks.append(peak)
                    except Exception as err:  # noqa: BLE001  (e.g. no FlexAttention backward on CPU)
                        cells.append(f"{'n/a':>{width_}}")
                        print(
                            f"  {name}: {'fwd+bwd' if backward else 'fwd'} failed: "
                            f"{type(err).__name__}: {err}"
                        )
                print(f"{row} {' '.join(cells)} {max(peaks, default=float('nan')):>9.1f}")
            if cuda:
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
