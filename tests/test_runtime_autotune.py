"""Autotuning over const candidates: the search, what it skips, its cache, and that it leaves arguments alone.

The search runs on the reference backend with a fake timer, so it is deterministic
and needs no GPU; the GPU test tunes a real Triton kernel end to end.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from tilelang import TileError, load, loads
from tilelang.ir.printer import kernel_str
from tilelang.kernel import TileKernel, _tunes
from tilelang.runtime.args import ArrayInfo, BoundCall, bind
from tilelang.runtime.autotune import Autotuner, bucket, configs, tunables

ROOT = Path(__file__).resolve().parents[1]

# R += X, tiled; W = 64 asks for 2048 threads, which no configuration survives
ACC = """
kernel acc(X: f32[M, N], R: f32[M, N], BM: const[1, 2, 4] = 2, BN: const[8, 16] = 8, W: const[1, 64] = 1)
    grid(cdiv(M, BM), cdiv(N, BN)) threads(W * 32)
{
    x = register(f32[BM, BN]);
    r = register(f32[BM, BN]);
    copy(X[block_id(0), block_id(1)], x);
    copy(R[block_id(0), block_id(1)], r);
    s = x + r;
    copy(s, R[block_id(0), block_id(1)]);
}
"""


class FakeTimer:
    """Runs each trial once and says BM=4, BN=16 is fastest; counts the trials."""

    def __init__(self):
        self.seen: list[dict] = []

    def __call__(self, run, config):
        run()
        self.seen.append(dict(config))
        return 1e-6 * (1 + abs(config.get("BM", 4) - 4) + abs(config.get("BN", 16) - 16))


def _setup(tmp_path, m=8, n=24):
    kernel = loads(ACC, "acc.tile")["acc"]
    rng = np.random.default_rng(0)
    x, r = rng.standard_normal((m, n), dtype=np.float32), rng.standard_normal((m, n), dtype=np.float32)
    timer = FakeTimer()
    return kernel, x, r, timer, Autotuner(timer, tmp_path / "tune")


def _choose(tuner, kernel, *args, **consts):
    call = bind(kernel.ir, args, consts)
    return tuner.choose(kernel.ir, call, "reference", None, lambda c: kernel.compile("reference", None, **c))


def test_search_times_survivors_skips_failures_and_leaves_arguments_alone(tmp_path):
    kernel, x, r, timer, tuner = _setup(tmp_path)
    r0 = r.copy()
    choice = _choose(tuner, kernel, x, r)
    assert choice.config == {"BM": 4, "BN": 16, "W": 1} and not choice.cached
    assert len(timer.seen) == 6 and all(c["W"] == 1 for c in timer.seen)
    assert set(choice.skipped) == {f"BM={m},BN={n},W=64" for m in (1, 2, 4) for n in (8, 16)}
    assert all("2048 threads" in why for why in choice.skipped.values())
    np.testing.assert_array_equal(r, r0)  # every trial ran on clones
    kernel(x, r, **choice.config)  # the winner on the real arguments: R += X exactly once
    np.testing.assert_array_equal(r, r0 + x)


def test_pinned_consts_are_not_searched(tmp_path):
    kernel, x, r, timer, tuner = _setup(tmp_path)
    assert list(tunables(kernel.ir, {"BM": 1})) == ["BN", "W"]
    choice = _choose(tuner, kernel, x, r, BM=1, W=1)
    assert choice.config == {"BN": 16}
    assert timer.seen == [{"BN": 8}, {"BN": 16}]
    assert _choose(tuner, kernel, x, r, BM=1, BN=8, W=1) is None  # nothing left to tune


def test_cache_hits_skip_timing_in_memory_on_disk_and_within_a_bucket(tmp_path):
    kernel, x, r, timer, tuner = _setup(tmp_path, m=20)
    first = _choose(tuner, kernel, x, r)
    n = len(timer.seen)
    assert _choose(tuner, kernel, x, r).cached  # memory
    again = Autotuner(timer, tmp_path / "tune")  # a new process: disk
    hit = _choose(again, kernel, x, r)
    assert hit.cached and hit.config == first.config and hit.timings == first.timings
    y, s = np.zeros((30, 24), np.float32), np.zeros((30, 24), np.float32)  # M=30 shares M=20's bucket
    assert _choose(again, kernel, y, s).cached
    assert len(timer.seen) == n
    y, s = np.zeros((16, 24), np.float32), np.zeros((16, 24), np.float32)  # M=16 is a bucket of its own
    assert not _choose(again, kernel, y, s).cached and len(timer.seen) == 2 * n
    assert len(list((tmp_path / "tune").glob("*.json"))) == 2


def test_key_changes_with_the_pinned_consts(tmp_path):
    kernel, x, r, timer, tuner = _setup(tmp_path)
    _choose(tuner, kernel, x, r)
    _choose(tuner, kernel, x, r, W=1)
    assert len(list((tmp_path / "tune").glob("*.json"))) == 2


def test_bucket_rule_keeps_small_dims_exact():
    assert [bucket(n) for n in (1, 2, 15, 16, 17, 32, 33, 4096, 4097)] == [1, 2, 15, 16, 32, 32, 64, 4096, 8192]


def test_grid_is_the_product_of_candidates():
    assert configs({"A": (1, 2), "B": (3, 4, 5)}) == [{"A": a, "B": b} for a in (1, 2) for b in (3, 4, 5)]


def test_corrupted_cache_file_is_ignored_with_a_warning_and_rewritten(tmp_path):
    kernel, x, r, timer, tuner = _setup(tmp_path)
    first = _choose(tuner, kernel, x, r)
    (path,) = (tmp_path / "tune").glob("*.json")
    for bad in ("{not json", json.dumps({"config": {"BM": 3, "BN": 16, "W": 1}, "timings": {}, "skipped": {}})):
        path.write_text(bad)
        fresh = Autotuner(timer, tmp_path / "tune")
        before = len(timer.seen)
        with pytest.warns(UserWarning, match="unreadable autotune cache file"):
            choice = _choose(fresh, kernel, x, r)
        assert not choice.cached and choice.config == first.config and len(timer.seen) == before + 6
        assert json.loads(path.read_text())["config"] == first.config


def test_concurrent_tuners_leave_one_whole_file(tmp_path):
    kernel, x, r, _, _ = _setup(tmp_path)
    results, errors = [], []

    def tune():
        try:
            results.append(_choose(Autotuner(FakeTimer(), tmp_path / "tune"), kernel, x, r).config)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=tune) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(c == results[0] for c in results)
    files = list((tmp_path / "tune").iterdir())
    assert len(files) == 1 and json.loads(files[0].read_text())["config"] == results[0]


def test_every_configuration_failing_is_a_tile_error(tmp_path):
    kernel, x, r, timer, tuner = _setup(tmp_path)
    with pytest.raises(TileError, match="no configuration that runs"):
        _choose(tuner, kernel, x, r, W=64)


def test_only_gpu_backends_on_gpu_arrays_tune(monkeypatch):
    info = ArrayInfo((8, 8), None, "cuda:0", True, "torch", "float16")
    gpu = BoundCall({}, {"M": 8, "N": 8}, {}, {}, {"X": info, "R": info})
    cpu = BoundCall({}, {"M": 8, "N": 8}, {}, {}, {"X": info, "R": ArrayInfo((8, 8), None, "cpu", True, "numpy", "float16")})
    assert _tunes("cuda", gpu) and _tunes("tvm", gpu)
    assert not _tunes("reference", gpu) and not _tunes("cuda", cpu)
    monkeypatch.setenv("TILELANG_AUTOTUNE", "0")
    assert not _tunes("cuda", gpu)


def test_reference_calls_use_defaults_and_never_time(tmp_path):
    def no_timing(run, config):
        raise AssertionError("the reference backend must not tune")

    kernel = TileKernel(loads(ACC)["acc"].ir, Autotuner(no_timing, tmp_path))
    x, r = np.ones((5, 9), np.float32), np.zeros((5, 9), np.float32)
    assert kernel.tuned(x, r) == {"BM": 2, "BN": 8, "W": 1}
    assert kernel.tuned(x, r, BN=16)["BN"] == 16
    kernel(x, r)
    np.testing.assert_array_equal(r, x)


def test_with_candidates_checks_names_and_defaults():
    gemv = load(ROOT / "kernels/gemv.tile")["gemv"]
    tuned = gemv.with_candidates(BM=[16, 32, 64])
    assert tuned.ir.param("BM").candidates == (16, 32, 64) and gemv.ir.param("BM").candidates == ()
    assert "BM: const[16, 32, 64] = 16" in kernel_str(tuned.ir)
    with pytest.raises(TileError, match="no int const 'T'"):
        gemv.with_candidates(T=[1])
    with pytest.raises(TileError, match="default 16 .* not one of its candidates"):
        gemv.with_candidates(BM=[32, 64])


@pytest.mark.gpu
def test_triton_call_tunes_on_the_gpu_and_caches(tmp_path, monkeypatch, capfd):
    import torch
    monkeypatch.setenv("TILELANG_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TILELANG_LOG", "1")
    gemv = TileKernel(load(ROOT / "kernels/gemv.tile")["gemv"].ir, Autotuner())
    gemv = gemv.with_candidates(BN=[16, 32, 64], BK=[64, 128, 256])
    x = torch.randn(3, 1000, device="cuda", dtype=torch.float16)
    w = torch.randn(777, 1000, device="cuda", dtype=torch.float16)
    y = torch.full((3, 777), float("nan"), device="cuda", dtype=torch.float16)
    gemv(x, w, y, STAGES=4)
    ref = x.float() @ w.float().T
    assert ((y.float() - ref).norm() / ref.norm()).item() < 1e-2
    (choice,) = gemv.tuner.memory.values()
    assert len(choice.timings) + len(choice.skipped) == 9 and choice.timings
    picked = gemv.tuned(x, w, y, STAGES=4)
    assert {k: picked[k] for k in choice.config} == choice.config and picked["STAGES"] == 4
    err = capfd.readouterr().err
    assert err.count("autotune gemv [triton") == 1  # tuned() was served from memory, without a search


def test_tiles_larger_than_the_problem_are_not_timed(tmp_path):
    kernel, x, r, timer, tuner = _setup(tmp_path, m=1, n=24)
    choice = _choose(tuner, kernel, x, r, W=1)
    assert {c["BM"] for c in timer.seen} == {1}  # M = 1: BM = 2 and 4 would only add masked rows
    assert {c["BN"] for c in timer.seen} == {8, 16}  # N = 24 rounds up to 32: both BN candidates stay
    assert choice.config["BM"] == 1
    kernel, x, r, timer, tuner = _setup(tmp_path / "b", m=3, n=5)
    _choose(tuner, kernel, x, r, W=1)
    assert {c["BM"] for c in timer.seen} == {1, 2, 4} and {c["BN"] for c in timer.seen} == {8}


def test_every_configuration_is_prepared_before_any_is_timed(tmp_path):
    """Compilation (a launcher's `prepare`) runs for the whole grid on a thread pool, then timing."""
    kernel, x, r, timer, tuner = _setup(tmp_path)
    events = []

    class Prepared:
        def __init__(self, launch, consts):
            self.launch, self.consts = launch, consts

        def prepare(self, call):
            events.append(("prepare", self.consts["BM"], self.consts["BN"]))

        def __call__(self, call):
            self.launch(call)

    prepared_when_timed = []
    tuner.timer = lambda run, config: (prepared_when_timed.append(len(events)), timer(run, config))[1]
    call = bind(kernel.ir, (x, r), {"W": 1})
    tuner.choose(kernel.ir, call, "reference", None,
                 lambda c: Prepared(kernel.compile("reference", None, **c), c))
    assert prepared_when_timed == [6] * 6
    assert sorted(events) == sorted(("prepare", c["BM"], c["BN"]) for c in timer.seen)
