"""`tilelang tune` (grid search, table, heat maps) and `tilelang bench` on the command line.

Timing needs a GPU; here the search runs the reference interpreter on CPU tensors with a
stand-in timer, which is what the GPU path runs around `timing.time_us`."""
from __future__ import annotations

import argparse

import pytest

from tilelang.bench import tune
from tilelang.cli import main
from tilelang.diagnostics import TileError


def _args(**kw) -> argparse.Namespace:
    base = dict(kernel="gemv", shape="M=1,K=96,N=40", sweep="BN,BK", values=["BN=16/32", "BK=32/64/128"],
                const=["STAGES=2"], backend="reference", plot=None, out=None)
    return argparse.Namespace(**{**base, **kw})


def test_tune_times_every_configuration_and_draws_the_heat_map(tmp_path, capsys):
    us = {(16, 32): 5, (16, 64): 3, (32, 32): 4, (32, 64): 2, (32, 128): 6}

    def timer(run, config):  # the autotuner's timer interface: seconds per launch
        run()
        if (config["BN"], config["BK"]) not in us:
            raise RuntimeError("launch failed: too many resources")
        return us[config["BN"], config["BK"]] * 1e-6
    assert tune.run(_args(plot=str(tmp_path / "heat.png"), out=str(tmp_path / "t.md")), timer, "cpu") == 0
    out = capsys.readouterr().out
    assert "| 32 | 64 | 2.00 | 1.00x | best |" in out
    assert "| 16 | 128 | - | - | RuntimeError: launch failed: too many resources |" in out
    heat = out.split("```")[1].strip().splitlines()
    assert heat[0].split() == ["BN", "\\", "BK", "32", "64", "128"]
    assert heat[1].split() == ["16", "5.00", "3.00", "x"] and heat[2].split() == ["32", "4.00", "2.00", "6.00"]
    png = (tmp_path / "heat.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "t.md").read_text().startswith("## gemv")


def test_tune_names_what_is_missing_or_unknown():
    with pytest.raises(TileError, match="needs the size 'N' of 'W'"):
        tune.run(_args(shape="M=1,K=96"), lambda run, config: 1e-6, "cpu")
    with pytest.raises(TileError, match="has no int constant 'BQ' to sweep"):
        tune.run(_args(sweep="BQ", values=[]), lambda run, config: 1e-6, "cpu")
    with pytest.raises(TileError, match="declares no candidates"):
        tune.run(_args(sweep="BM", values=[]), lambda run, config: 1e-6, "cpu")
    with pytest.raises(TileError, match="the kernel library has no kernel 'gemvv'"):
        tune.run(_args(kernel="gemvv"), lambda run, config: 1e-6, "cpu")


@pytest.mark.parametrize("cmd", [["tune", "gemv", "--shape", "M=1,K=64,N=64", "--sweep", "BN"], ["bench", "--quick"]])
def test_tune_and_bench_without_a_gpu_say_so(cmd, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(cmd) == 1 and "on a CUDA GPU, and torch sees none here" in capsys.readouterr().err
