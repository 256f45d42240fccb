"""`jaxconv bench --quick --json FILE --cpus N`: the table and the JSON it writes hold
every registered bench case, wall and CPU times, ratios that are medians of the
paired rounds, the residual bytes each rule keeps, and the cores it was pinned to
(no timing is asserted: speed is shown in experiments/, not tested)."""
import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from jaxconv import _registry, bench, cli

CORE = min(os.sched_getaffinity(0))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    before = os.sched_getaffinity(0)
    assert cli.main(["bench", "--quick", "--json", str(path), "--cpus", str(CORE)]) == 0
    assert os.sched_getaffinity(0) == before          # the pin ends with the run
    return json.loads(path.read_text())


def test_every_registered_case_is_measured_against_autodiff_and_torch(quick_run):
    rows = {r["case"]: r for r in quick_run["rows"]}
    on_cpu = jax.default_backend() == "cpu"   # the native kernels are benched on CPUs only
    expected = {case.name for spec in _registry.ops().values() for case in spec.bench(True)
                if on_cpu or case.hyper.get("impl") != "native"}
    assert {case.name for _, case in bench.cases(quick=True)} == expected
    assert expected <= set(rows) and any(name.startswith("ThreeLayerConvNet") for name in rows)
    assert {r["op"] for r in quick_run["rows"] if "op" in r} == set(_registry.ops())
    assert quick_run["device"].startswith(jax.default_backend().upper())
    assert quick_run["cpus"] == [CORE] and quick_run["pinned"] is True
    has_torch = importlib.util.find_spec("torch") is not None
    assert (quick_run["torch"] is not None) == has_torch
    for row in rows.values():
        with_torch = has_torch and ("op" not in row or _registry.spec(row["op"]).torch is not None)
        assert ("torch_ms" in row) == with_torch
        for other in ("autodiff", "torch") if with_torch else ("autodiff",):
            assert row[f"{other}_ms"] > 0 and row[f"{other}_cpu_ms"] >= 0
            rounds = row["rounds"]
            for kind, suffix in (("wall_ms", ""), ("cpu_ms", " cpu")):
                mine, theirs = np.array(rounds["custom"][kind]), np.array(rounds[other][kind])
                assert len(mine) == len(theirs) == quick_run["repeats"]
                assert row[f"custom/{other}{suffix}"] == pytest.approx(
                    np.median(mine / np.maximum(theirs, 1e-3)))
            assert row[f"{other}_ms"] == pytest.approx(np.median(rounds[other]["wall_ms"]))
    # autodiff of the custom op's own forward, where it differs from the twin
    assert "same_fwd_ms" in rows["conv2d im2col s1"] and "same_fwd_ms" not in rows["conv2d xla s1"]


def test_residual_bytes_are_what_each_rule_keeps(quick_run):
    rows = {r["case"]: r for r in quick_run["rows"]}
    x_bytes, w_bytes = 8 * 3 * 16 * 16 * 4, 8 * 3 * 3 * 3 * 4      # the quick shapes, float32
    for impl in ("xla", "im2col", "naive"):
        assert rows[f"conv2d {impl} s1"]["residual_bytes_custom"] == x_bytes + w_bytes
    pooled = 8 * 8 * 8 * 8                                          # one uint8 per output
    assert rows["max_pool2d 2x2"]["residual_bytes_custom"] == pooled
    assert rows["max_pool2d 2x2"]["residual_bytes_autodiff"] >= 4 * 8 * 8 * 16 * 16
    assert rows["avg_pool2d 2x2"]["residual_bytes_custom"] == 0
    assert rows["relu (8, 8, 16, 16)"]["residual_bytes_custom"] == 8 * 8 * 16 * 16  # bool mask


def test_table_lists_every_row(quick_run):
    table = bench.format_table(quick_run)
    lines = table.splitlines()
    assert lines[0].startswith("device: CPU") and f"cores used: {CORE} (pinned)" in lines[0]
    assert lines[1] == ""
    assert "custom/autodiff" in lines[2] and "residual KiB custom" in lines[2]
    assert len(lines) == 4 + len(quick_run["rows"])
    assert np.all([line.count("|") == lines[2].count("|") for line in lines[2:]])
    conv = next(line for line in lines if line.startswith("| conv2d xla s1 |"))
    assert conv.split("|")[2].count("/") == 1                      # "wall / cpu"


@pytest.mark.parametrize("text, cores", [("0", {0}), ("0,1", {0, 1}), ("0-2,5", {0, 1, 2, 5})])
def test_cpus_spellings(text, cores):
    assert bench.parse_cpus(text) == cores


@pytest.mark.parametrize("text", ["", "a", "-1", "1-a"])
def test_bad_cpus_is_an_error(text):
    with pytest.raises(ValueError, match="--cpus"):
        bench.parse_cpus(text)
