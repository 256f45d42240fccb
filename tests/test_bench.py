"""`jaxconv bench --quick --json FILE`: the table and the JSON it writes hold every
case, consistent ratios and the residual bytes each rule keeps (no timing is
asserted: speed is shown in experiments/, not tested)."""
import importlib.util
import json

import numpy as np
import pytest

from jaxconv import bench, cli


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    assert cli.main(["bench", "--quick", "--json", str(path)]) == 0
    return json.loads(path.read_text())


def test_every_case_is_measured_against_autodiff_and_torch(quick_run):
    rows = {r["case"]: r for r in quick_run["rows"]}
    expected = {c.name for c in bench.cases(quick=True)}
    assert expected <= set(rows) and any(name.startswith("ThreeLayerConvNet") for name in rows)
    assert quick_run["device"].startswith("CPU")
    has_torch = importlib.util.find_spec("torch") is not None
    assert (quick_run["torch"] is not None) == has_torch
    for row in rows.values():
        for other in ("autodiff", "torch") if has_torch else ("autodiff",):
            assert row[f"{other}_ms"] > 0
            assert row[f"custom/{other}"] == pytest.approx(row["custom_ms"] / row[f"{other}_ms"])
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


def test_table_lists_every_row(quick_run):
    table = bench.format_table(quick_run)
    lines = table.splitlines()
    assert lines[0].startswith("device: CPU") and lines[1] == ""
    assert "custom/autodiff" in lines[2] and "residual KiB custom" in lines[2]
    assert len(lines) == 4 + len(quick_run["rows"])
    assert np.all([line.count("|") == lines[2].count("|") for line in lines[2:]])
