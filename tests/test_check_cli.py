"""``jaxconv check``: exit 0 on the package (every op of SPEC section 2, every
conv impl x layout), exit 1 when one op's backward rule is broken."""
import jax.numpy as jnp

from jaxconv import _dense, check, cli
from jaxconv._vjp import custom_vjp_op


def test_check_passes_on_every_op(capsys):
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    covered = {row[0] for row in rows[3:] if row and row[-1] == "ok"}   # after the header
    assert covered == {"affine", "relu", "conv2d", "max_pool2d", "avg_pool2d", "batch_norm",
                       "layer_norm", "group_norm", "dropout", "softmax_loss", "svm_loss"}
    for impl in ("xla", "im2col", "naive"):
        for layout in ("NCHW", "NHWC"):
            assert any(r[:3] == ["conv2d", impl, layout] for r in rows), (impl, layout)
    for case in (["(N,", "D)", "train"], ["(N,", "D)", "eval"], ["NCHW", "train"],
                 ["NCHW", "eval"]):
        assert any(r[0] == "batch_norm" and r[1:1 + len(case)] == case for r in rows), case
    assert any(r[0] == "max_pool2d" and "(overlap)" in r for r in rows)
    assert "FAIL" not in out and "all within tolerance" in out


def _only(keep):
    """``check.cases`` restricted to the ``(op, case)`` pairs ``keep`` accepts."""
    every = check.cases
    return lambda: [c for c in every() if keep(c[0], c[1])]


def _broken_relu_bwd(c, positive, g):
    return (jnp.where(positive, 1.01 * g, 0.0),)   # 1% too large


def test_check_fails_when_a_rule_is_broken(monkeypatch, capsys):
    # relu() calls the module-level op at call time: replace that op with one
    # whose backward is wrong (the rule function itself is captured at import).
    monkeypatch.setattr(_dense, "_relu", custom_vjp_op(
        _dense._relu_primal, _dense._relu_fwd, _broken_relu_bwd))
    monkeypatch.setattr(check, "cases", _only(lambda op, case: op in ("relu", "affine")))
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    relu_rows = [line for line in out.splitlines() if line.startswith("relu")]
    assert relu_rows and all(line.endswith("FAIL") for line in relu_rows), out
    assert all(line.endswith("ok") for line in out.splitlines() if line.startswith("affine"))
    assert "FAILED" in out


def test_check_float32_tolerances_hold(monkeypatch, capsys):
    # A few cases: the whole float32 table passes too, but takes as long as float64.
    keep = {("relu", "x (3, 4)"), ("batch_norm", "(N, D) train"), ("softmax_loss", "scores (4, 5)")}
    monkeypatch.setattr(check, "cases", _only(lambda op, case: (op, case) in keep))
    assert cli.main(["check", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "float32" in out and "FAIL" not in out
    assert len([line for line in out.splitlines()[3:] if line.endswith(" ok")]) == 7
