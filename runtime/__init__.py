"""runtime/: where the model and the wafer simulator meet — sharded execution, training, data, checkpoints, CLI.

Kept import-light (no JAX at import time) so that the `wse` command line starts fast. The tutorial's entry points
(``from runtime import initialize_model, load_pretrain_data, load_task_data``, see runtime/workflow.py) are loaded
on first use through the module ``__getattr__``.
"""

_WORKFLOW = ("initialize_model", "load_pretrain_data", "load_task_data")
__all__ = list(_WORKFLOW)


def __getattr__(name: str):
    if name in _WORKFLOW:
        from runtime import workflow

        return getattr(workflow, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
