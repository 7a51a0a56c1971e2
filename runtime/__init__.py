"""runtime/: where the model and the wafer simulator meet — sharded execution, training, data, checkpoints, CLI.

Kept import-light (no JAX at import time) so that the `wse` command line starts fast. The tutorial's entry points
(``from runtime import initialize_model, load_pretrain_data, load_task_data``, see runtime/workflow.py) are loaded
on first use through the module ``__getattr__``.

The root holds the entry points: ``cli`` (the `wse` command line), ``errors`` (the user-error type), ``workflow`` (the
tutorial API) and ``planning`` (a model as the simulator's shape, for `wse plan`). Every other job has a folder:
``config/`` (the run config: schema, loading, the one merge of defaults, rules; generation settings at their edges),
``platform/`` (devices, processes, the mesh, the compilation cache), ``data/``, ``execution/`` (the modes, placement,
sharding, the optimizer), ``train/`` (the loop, fine-tuning, evaluation), ``checkpoint/`` and ``commands/`` (one
module per subcommand).
"""

_WORKFLOW = ("initialize_model", "load_pretrain_data", "load_task_data")
__all__ = list(_WORKFLOW)


def __getattr__(name: str):
    if name in _WORKFLOW:
        from runtime import workflow

        return getattr(workflow, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
