"""benchmarks/memory_estimate.py's storage tracker against hand-counted cases on the meta device."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import memory_estimate as est


def test_live_storages_counts_allocations_views_and_releases():
    weight = torch.empty(1000, device="meta")  # made before the mode: not counted
    mode = est.LiveStorages([weight])
    with mode:
        a = torch.empty(1000, device="meta")        # 4000 B
        view = a.view(10, 100)                      # same storage: nothing new
        b = weight * 2                              # 4000 B
        del a                                       # the view keeps the storage
        assert mode.now == 8000
        c = b.to(torch.float64)                     # 8000 B: peak 16000
        del view, b, c
        d = torch.empty(3, dtype=torch.bfloat16, device="meta")  # 6 B
    assert mode.peak == 16000 and mode.now == 6 and len(d) == 3
    assert sorted(b for b, _ in mode.at_peak) == [4000, 4000, 8000]
    assert any("_to_copy" in what and "float64" in what for _, what in mode.at_peak)


def test_fused_attention_allocates_the_output_only_and_keeps_gradients():
    q = torch.empty(2, 4, 1000, 40, device="meta", requires_grad=True)
    with est.fused_attention():
        mode = est.LiveStorages([q])
        with mode:
            out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert out.shape == (2, 4, 1000, 40) and out.grad_fn is not None
    assert out.numel() * 4 <= mode.peak < 1.1 * out.numel() * 4  # never the (1000 x 1000) scores
    assert torch.nn.functional.scaled_dot_product_attention is not None  # restored on leaving
