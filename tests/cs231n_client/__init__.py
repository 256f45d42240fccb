"""A stand-in for a student's CS231n assignment-2 package, written in the assignment's own
style (classifiers/fc_net.py, classifiers/cnn.py, solver.py, gradient_check.py).

Its files are what a student's files are, except the import lines: where the
assignment says ``from ..layers import *`` / ``from cs231n import optim``, these say
``from jaxconv.compat.cs231n.layers import *`` / ``from jaxconv.compat.cs231n import
optim``. The one-line alternative, ``jaxconv.compat.cs231n.install()``, is tested on
unchanged ``from cs231n.layers import *`` code in tests/test_compat_cs231n_client.py.
"""
