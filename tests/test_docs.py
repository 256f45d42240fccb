"""The examples in the docstrings are true: run them as doctests, in a fresh
process with JAX's default configuration (the suite itself turns x64 on, which
would change the printed dtypes)."""
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = """
import doctest, importlib, sys
module = importlib.import_module(sys.argv[1])
result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
assert result.attempted > 0, "no examples found"
sys.exit(1 if result.failed else 0)
"""


@pytest.mark.parametrize("module", ["jaxconv.optim", "jaxconv.models", "jaxconv.solver"])
def test_docstring_examples(module):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, module], capture_output=True,
                          text=True, env=env, timeout=120,
                          cwd=pathlib.Path(__file__).parents[1])
    assert done.returncode == 0, done.stdout + done.stderr
