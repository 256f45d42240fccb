"""``jaxconv check``: its table covers every case of every registered op (the
numbers themselves are proven per case in tests/test_ops_gradients.py); exit 0 on
real ops, exit 1 when one op's backward rule is broken, exit 2 on an unknown op."""
import jax.numpy as jnp
import pytest

from jaxconv import _dense, _registry, check, cli, gradcheck
from jaxconv._vjp import custom_vjp_op


def _rows(out):
    return [line for line in out.splitlines()[3:] if line.endswith((" ok", "FAIL"))]


def test_table_covers_every_registered_case_and_argument(monkeypatch, capsys):
    """The table, with the comparison stubbed (every error 0): one row per case and
    per argument that gets a gradient, for every op the registry declares."""
    def instant(name, *args, **hyper):
        spec = _registry.spec(name)
        return {n: {"autodiff": 0.0, "numerical": 0.0} for n, a in
                zip(spec.array_names(args), spec.bind(args, {})[2])
                if n in spec.grads and a is not None and a.dtype.kind == "f"}
    monkeypatch.setattr(gradcheck, "compare", instant)
    assert cli.main(["check"]) == 0
    rows = _rows(capsys.readouterr().out)
    expected = [(name, case.name, argument) for name, spec in _registry.ops().items()
                for case in spec.check_cases() for argument in instant(name, *case.args)]
    assert len(rows) == len(expected) and len(expected) > 60
    for row, (name, case, argument) in zip(rows, expected):
        assert row.startswith(f"{name:<13}{case:<36}{argument:<14}"), (row, name, case)
    assert {name for name, _, _ in expected} == set(_registry.ops())


def test_check_passes_on_real_ops(capsys):
    assert cli.main(["check", "--op", "relu", "--op", "svm_loss", "--op", "col2im"]) == 0
    out = capsys.readouterr().out
    assert {row.split()[0] for row in _rows(out)} == {"relu", "svm_loss", "col2im"}
    assert "FAIL" not in out and "all within tolerance" in out


def _broken_relu_bwd(c, positive, g):
    return (jnp.where(positive, 1.01 * g, 0.0),)   # 1% too large


def test_check_fails_when_a_rule_is_broken(monkeypatch, capsys):
    # relu() calls the module-level op at call time: replace that op with one
    # whose backward is wrong (the rule function itself is captured at import).
    monkeypatch.setattr(_dense, "_relu", custom_vjp_op(
        _dense._relu_primal, _dense._relu_fwd, _broken_relu_bwd))
    assert cli.main(["check", "--op", "relu", "--op", "affine"]) == 1
    out = capsys.readouterr().out
    relu_rows = [line for line in out.splitlines() if line.startswith("relu")]
    assert relu_rows and all(line.endswith("FAIL") for line in relu_rows), out
    assert all(line.endswith("ok") for line in out.splitlines() if line.startswith("affine"))
    assert "FAILED" in out


def test_check_float32_tolerances_hold(monkeypatch, capsys):
    # A few cases: the whole float32 table passes too, but takes as long as float64.
    keep = {("relu", "x (3, 4)"), ("batch_norm", "(N, D) train"), ("softmax_loss", "scores (4, 5)")}
    every = check.cases
    monkeypatch.setattr(check, "cases", lambda ops=None: [
        c for c in every() if (c[0], c[1]) in keep])
    assert cli.main(["check", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "float32" in out and "FAIL" not in out
    assert len([line for line in _rows(out) if line.endswith(" ok")]) == 7


def test_unknown_op_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["check", "--op", "conv9d"])
    assert exit_.value.code == 2
    assert "--op conv9d: not a registered op" in capsys.readouterr().err
