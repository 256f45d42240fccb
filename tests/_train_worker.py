"""Helper of tests/test_distributed.py: one small training run in its own process.

    python tests/_train_worker.py OUT.npz [PORT NUM_PROCESSES PROCESS_ID]

With the three extra arguments the process joins a JAX cluster on 127.0.0.1:PORT
(gloo CPU collectives) first. It saves the flattened parameters and batch-norm
state, the loss history and the global device count to OUT.npz. The XLA_FLAGS
of its environment decide how many CPU devices it has.
"""
import sys

import jax
import numpy as np

EPOCHS = 3


def train():
    """The run every configuration must agree on: batch norm, dropout, momentum, lr_decay."""
    from jaxconv import data, optim
    from jaxconv.models import FullyConnectedNet
    from jaxconv.solver import Solver

    digits = data.load_digits()
    small = {"X_train": digits["X_train"][:400], "y_train": digits["y_train"][:400],
             "X_val": digits["X_val"][:100], "y_val": digits["y_val"][:100]}
    model = FullyConnectedNet([32], input_dim=64, normalization="batchnorm",
                              dropout_keep_ratio=0.8, weight_scale=0.1)
    solver = Solver(model, small, optimizer=optim.sgd_momentum(1e-2), lr_decay=0.9,
                    batch_size=40, num_epochs=EPOCHS, verbose=False, seed=3)
    solver.train()
    # Replicated arrays: each process's first shard is the whole value.
    leaves = [np.asarray(x.addressable_data(0)).ravel()
              for x in jax.tree.leaves((solver.params, solver.state))]
    return np.concatenate(leaves), np.asarray(solver.loss_history), solver.val_acc_history


def main(argv):
    out = argv[0]
    if len(argv) == 4:
        port, num_processes, process_id = argv[1], int(argv[2]), int(argv[3])
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=num_processes,
                                   process_id=process_id)
    params, losses, val_acc = train()
    np.savez(out, params=params, losses=losses, val_acc=val_acc,
             devices=len(jax.devices()), processes=jax.process_count())


if __name__ == "__main__":
    main(sys.argv[1:])
