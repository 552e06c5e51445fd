"""The ``attnzoo`` command run in-process, and the FLOP counter on a hand-computable model.

User errors of every subcommand (and signals) are in test_cli_errors.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
import timm
import torch

from attnzoo.backbones import FAMILIES
from attnzoo.cli import main
from attnzoo.kernels import use_kernels
from attnzoo.layers import HaloAttention
from attnzoo.zoo import family_of, list_families, list_models
from attnzoo.zoo.bench import BenchResult, benchmark_model, format_table, kernels_used
from attnzoo.zoo.facts import (
    count_gflops,
    count_params,
    param_count,
    resolve_input_size,
    smallest_variant_per_family,
)

SMALL_MODEL = "az_convit_tiny"  # switch to another cheap model here if needed


def test_count_gflops_linear_is_two_flops_per_multiply_add() -> None:
    layer = torch.nn.Linear(48, 20)
    assert count_gflops(layer, (48,), batch_size=3) == pytest.approx(2 * 48 * 20 * 3 / 1e9)


def test_count_gflops_conv() -> None:
    conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    # every output pixel: 8 channels x (3*3*3) multiply-adds
    assert count_gflops(conv, (3, 10, 12)) == pytest.approx(2 * 8 * 27 * 10 * 12 / 1e9)
    assert conv.training  # restored after the count


def test_count_params_counts_shared_tensors_once() -> None:
    lin = torch.nn.Linear(4, 5)
    tied = torch.nn.Sequential(lin, torch.nn.ReLU(), torch.nn.Linear(5, 4))
    tied[2].weight = torch.nn.Parameter(lin.weight.t().contiguous())
    assert count_params(tied) == 4 * 5 + 5 + 5 * 4 + 4
    shared = torch.nn.Sequential(lin, lin)
    assert count_params(shared) == 25


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list_models()
    assert all(line.split()[1] == family_of(line.split()[0]) for line in lines)


def test_list_family_and_pretrained(capsys: pytest.CaptureFixture[str]) -> None:
    family = family_of(SMALL_MODEL)
    assert main(["list", "--family", family]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == list_models(family)

    assert main(["list", "--pretrained"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    with_weights = {n.split(".")[0] for n in timm.list_pretrained()}
    assert names and all(n in with_weights for n in names)
    assert set(names) <= set(list_models())


def test_list_unknown_family(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--family", "no_such_family"]) == 2
    err = capsys.readouterr().err
    assert "no_such_family" in err and "Traceback" not in err


def test_info(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", SMALL_MODEL]) == 0
    out = capsys.readouterr().out
    fields = dict(line.split(":", 1) for line in out.splitlines() if line and not line.startswith(" "))
    model = timm.create_model(SMALL_MODEL)
    assert int(fields["params"].split()[0]) == sum(p.numel() for p in model.parameters())
    assert float(fields["GFLOPs"].split()[0]) > 0
    c, h, w = model.pretrained_cfg["input_size"]
    assert fields["input size"].strip() == f"{c}x{h}x{w}"
    for f in model.feature_info:
        assert f"channels={f['num_chs']} stride={f['reduction']}" in out
    # every pretrained tag is listed with its sources, in the order loading tries them
    for tagged in timm.models.get_arch_pretrained_cfgs(SMALL_MODEL):
        assert f"  {tagged}:" in out


def test_info_lists_the_load_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "biformer_tiny"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("  biformer_tiny.in1k:"))
    weights = FAMILIES["biformer"].weights_for("biformer_tiny")
    hub, official = "hf-hub:attnzoo/biformer_tiny.in1k", weights.official_url.url
    assert line.index(hub) < line.index(official) and line.endswith("license=mit")
    assert main(["info", "infvit_pure_4l"]) == 0
    assert "infvit_pure_4l.untrained: none released" in capsys.readouterr().out


def test_info_img_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", SMALL_MODEL, "--img-size", "64"]) == 0
    assert "input size:  3x64x64" in capsys.readouterr().out


def test_bench_one_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", SMALL_MODEL, "--iters", "1", "--img-size", "64"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split() == ["model", "family", "params", "(M)", "GFLOPs", "kernels", "img/s", "strides"]
    assert len(lines) == 3  # header, rule, one row
    row = lines[2].split()
    assert row[0] == SMALL_MODEL and row[1] == family_of(SMALL_MODEL)
    assert row[4] == "torch"  # CPU: the dispatch rule picks the reference kernels
    assert float(row[5]) > 0
    assert "bench" in captured.err  # the tqdm bar goes to stderr, never into the table


def test_usage_error_returns_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no_such_command"]) == 2
    assert main(["bench", "--iters", "0"]) == 2
    assert main(["--help"]) == 0
    assert "bench" in capsys.readouterr().out


def test_benchmark_model_fields() -> None:
    res = benchmark_model(SMALL_MODEL, batch_size=2, img_size=64, warmup=0, iters=1)
    assert isinstance(res, BenchResult)
    model = timm.create_model(SMALL_MODEL)
    assert res.params == sum(p.numel() for p in model.parameters())
    assert res.family == family_of(SMALL_MODEL)
    assert res.input_size == (3, 64, 64)
    assert res.kernel_backend == "torch"
    assert res.images_per_s > 0 and res.gflops > 0
    feats = timm.create_model(SMALL_MODEL, features_only=True)
    assert res.strides == tuple(feats.feature_info.reduction())
    table = format_table([res, res]).splitlines()
    assert len(table) == 4 and len({len(line) for line in table[1:]}) == 1  # rule and rows align
    assert table[0].index("strides") == table[2].index(
        ",".join(map(str, res.strides))
    )  # columns line up under the header


def test_default_input_size_is_the_pretrained_cfgs() -> None:
    model = timm.create_model(SMALL_MODEL)
    assert resolve_input_size(model) == tuple(model.pretrained_cfg["input_size"])
    assert resolve_input_size(model, 96) == (3, 96, 96)
    assert resolve_input_size(model, (64, 80)) == (3, 64, 80)


def test_smallest_variant_per_family() -> None:
    smallest = smallest_variant_per_family()
    assert [family_of(n) for n in smallest] == list_families()
    for name in smallest:
        counts = {n: param_count(n) for n in list_models(family_of(name))}  # cached by the call above
        assert counts[name] == min(counts.values())
        # the cheap (meta-device) count is the real one
        assert counts[name] == count_params(timm.create_model(name))


def test_python_dash_m() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "attnzoo", "list", "--family", family_of(SMALL_MODEL)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert SMALL_MODEL in proc.stdout


def test_kernels_column_names_the_triton_ops_that_ran() -> None:
    layer = HaloAttention(16, 16, num_heads=2, block_size=4, halo_size=1).eval()
    x = torch.randn(1, 16, 8, 8)
    with use_kernels("triton"):  # on CPU through TRITON_INTERPRET=1 (tests/conftest.py)
        assert kernels_used(layer, x) == "triton: halo_attention"
        # ConViT has no custom kernel: forcing Triton changes nothing, and the column says so
        assert kernels_used(timm.create_model(SMALL_MODEL).eval(), torch.randn(1, 3, 32, 32)) == "torch"
    with use_kernels("torch"):
        assert kernels_used(layer, x) == "torch"
