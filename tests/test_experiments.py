"""Smoke test of every study in experiments/: each runs in its tiny configuration
(``--tiny``: one epoch, a few samples), in this process (``main(argv)``; the
scaling study starts its own worker subprocesses), and must write its PNG and a
JSON that holds the numbers the figure shows. Where a study measures something
with an independent oracle (the autodiff twins, centered differences, one
device), the tiny run's numbers are checked against it too."""
import importlib.util
import json
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(ROOT, "experiments")


def _run(name, out):
    if EXPERIMENTS not in sys.path:  # the studies import their shared ``_common``
        sys.path.insert(0, EXPERIMENTS)
    spec = importlib.util.spec_from_file_location(f"experiments_{name}",
                                                  os.path.join(EXPERIMENTS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    payload = module.main(["--tiny", "--out", str(out)])
    return payload, json.loads((out / f"{name}.json").read_text())


def _series(record, figure, panel):
    return record["figures"][figure]["panels"][panel]["series"]


def _check_common(name, payload, record, out):
    assert payload["study"] == name
    assert record["study"] == name and record["tiny"] is True
    device = record["device"]
    assert device["jax_devices"] and device["cpu"] and device["jax"]
    assert record["device_label"].startswith(device["platform"].upper())
    for figure in record["figures"].values():
        png = out / figure["png"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert 0 < png.stat().st_size < 200_000
        assert figure["title"]
        for panel in figure["panels"].values():
            assert panel["series"], f"{name}: panel {panel['title']!r} plots nothing"
            for label, s in panel["series"].items():
                if "values" in s:  # an image
                    assert math.prod(s["shape"]) == len(s["values"])
                    values = s["values"]
                else:
                    assert len(s["x"]) == len(s["y"]) > 0, (name, panel["title"], label)
                    values = s["y"]
                assert all(v is not None and math.isfinite(v) for v in values), (name, label)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("experiments")


def test_update_rules(out):
    payload, r = _run("update_rules", out)
    _check_common("update_rules", payload, r, out)
    loss = _series(r, "update_rules", "loss")
    rules = ["sgd", "sgd_momentum", "rmsprop", "adam"]
    assert [label.split()[0] for label in loss] == rules
    steps = r["settings"]["num_train"] // r["settings"]["batch_size"] * r["settings"]["epochs"]
    for label, rule in zip(loss, rules):
        assert len(loss[label]["y"]) == steps
        assert loss[label]["y"][-1] == pytest.approx(r["results"][rule]["final_loss"])
        val = _series(r, "update_rules", "val_acc")[label]["y"]
        assert len(val) == r["settings"]["epochs"]
        assert val[-1] == pytest.approx(r["results"][rule]["final_val_acc"])


def test_batchnorm(out):
    payload, r = _run("batchnorm", out)
    _check_common("batchnorm", payload, r, out)
    norms = ["none", "batchnorm", "layernorm"]
    assert list(_series(r, "batchnorm", "loss")) == norms
    for panel in ("sweep_train", "sweep_val"):
        for norm in norms:
            assert _series(r, "batchnorm", panel)[norm]["x"] == \
                pytest.approx(r["settings"]["weight_scales"])
    for norm in norms:
        assert _series(r, "batchnorm", "batch")[norm]["x"] == r["settings"]["batch_sizes"]
        assert 0 <= min(_series(r, "batchnorm", "batch")[norm]["y"]) <= 1


def test_dropout(out):
    payload, r = _run("dropout", out)
    _check_common("dropout", payload, r, out)
    keeps = [f"keep {k:g}" for k in (1.0, 0.75, 0.5, 0.25)]
    for panel in ("train_acc", "val_acc", "gap"):
        assert list(_series(r, "dropout", panel)) == keeps
    for k in keeps:
        train = _series(r, "dropout", "train_acc")[k]["y"]
        val = _series(r, "dropout", "val_acc")[k]["y"]
        gap = _series(r, "dropout", "gap")[k]["y"]
        assert gap == pytest.approx([t - v for t, v in zip(train, val)])
        assert r["results"][k]["final_gap"] == pytest.approx(gap[-1])


def test_convnet(out):
    payload, r = _run("convnet", out)
    _check_common("convnet", payload, r, out)
    ran, missing = r["results"]["impls_run"], r["results"]["impls_unavailable"]
    assert {"xla", "im2col", "naive"} <= set(ran)
    assert sorted(ran + list(missing)) == sorted(r["settings"]["tried_impls"])
    assert list(_series(r, "convnet", "loss")) == ran
    assert _series(r, "convnet", "time")["CPU ms"]["x"] == ran
    # Every impl trains the same network: the curves agree with xla's (float32 rounding).
    for impl in ran:
        assert r["results"]["per_impl"][impl]["max_loss_diff_vs_xla"] < 1e-4
        assert r["results"]["per_impl"][impl]["max_param_diff_vs_xla"] < 1e-4
    grid = _series(r, "convnet", "filters")["W1"]["shape"]
    k, f = r["settings"]["filter_size"], r["settings"]["num_filters"]
    assert grid[0] * grid[1] >= f * k * k


def test_custom_vs_autodiff(out):
    payload, r = _run("custom_vs_autodiff", out)
    _check_common("custom_vs_autodiff", payload, r, out)
    res = r["results"]
    # Hand-derived rules vs autodiff of the twins, through training: rounding only.
    assert max(res["per_dtype"]["float64"]["max_param_diff_per_epoch"]) < 1e-12
    assert max(res["per_dtype"]["float32"]["max_param_diff_per_epoch"]) < 1e-5
    assert res["library_model_vs_experiment_network_max_loss_grad_diff"] < 1e-6
    assert set(_series(r, "custom_vs_autodiff", "params")) == {"float32", "float64"}
    bytes_ = res["residual_bytes"]
    assert _series(r, "custom_vs_autodiff", "residuals")["bars"]["y"] == \
        pytest.approx([bytes_["custom"] / 1024, bytes_["autodiff"] / 1024])
    assert 0 < bytes_["custom"] < bytes_["autodiff"]


def test_gradcheck_accuracy(out):
    payload, r = _run("gradcheck_accuracy", out)
    _check_common("gradcheck_accuracy", payload, r, out)
    ops, hs = r["settings"]["ops"], r["settings"]["h"]
    assert r["settings"]["dtypes"] == ["float64", "float32", "bfloat16"]
    for dtype in r["settings"]["dtypes"]:
        series = _series(r, "gradcheck_accuracy", f"normwise_{dtype}")
        assert list(series) == ops
        assert all(s["x"] == pytest.approx(hs) for s in series.values())
    for op in ops:  # float64 against centered differences and against autodiff
        row = r["results"]["summary"]["float64"][op]
        assert row["best_normwise"] < 1e-8 and row["twin_normwise"] < 1e-12
        # The flat line: rounding-level agreement with the twin in every dtype.
        assert r["results"]["summary"]["bfloat16"][op]["twin_normwise"] < 5e-2


def test_memory(out):
    payload, r = _run("memory", out)
    _check_common("memory", payload, r, out)
    batches = r["settings"]["batch_sizes"]
    table = r["results"]["table"]
    assert list(table) == ["ThreeLayerConvNet", "DeepConvNet"]
    for net, variants in table.items():
        for ops in ("custom", "autodiff"):
            rows = [variants[ops][str(b)] for b in batches]
            residuals = [row["residual_bytes"] for row in rows]
            assert residuals == sorted(residuals) and residuals[0] > 0
            assert _series(r, "memory", "residual")[f"{net} {ops}"]["y"] == \
                pytest.approx([v / 2 ** 20 for v in residuals])
            if r["settings"]["memory_analysis_reported"]:
                assert all(row["peak_memory_in_bytes"] > 0 for row in rows)
        for b in batches:  # the hand rules keep less than autodiff
            assert variants["custom"][str(b)]["residual_bytes"] < \
                variants["autodiff"][str(b)]["residual_bytes"]


def test_scaling(out):
    payload, r = _run("scaling", out)
    _check_common("scaling", payload, r, out)
    res = r["results"]
    assert list(res) == ["1 device", "2 devices", "2 processes x 1 device"]
    assert [(v["devices"], v["processes"]) for v in res.values()] == [(1, 1), (2, 1), (2, 2)]
    for name, v in res.items():  # data parallel: the same parameters as one device
        assert v["max_param_diff_vs_1_device"] < 1e-5, name
    # the replicas agree to float32 rounding: 0 here (AMD EPYC, jax 0.10), one float32 ulp
    # (1.2e-10) once on a 16-core Intel Xeon with jax 0.11.2
    assert res["2 processes x 1 device"]["max_param_diff_between_processes"] < 1e-8
    assert _series(r, "scaling", "time")["wall ms"]["x"] == list(res)
