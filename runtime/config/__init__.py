"""The run config: one validated description of a training run (model, data, mesh, execution, train, observe).

It comes from an optional YAML file plus ``key=value`` overrides (``mesh.devices=8 mesh.axes.stage=4 train.steps=20
model=tiny data=builtin``), MaxText style, so changing the parallelism or the run length is a config change, never a
code change. Every key is checked: an unknown one is refused with the closest valid key named, in one line. Unset
training knobs (batch size, sequence length, peak LR, decay shape, warmup) are filled by ``RunConfig.resolve``, the
one merge of defaults (which also says where each value came from); the resolved config (nothing left unset) is what
a checkpoint records, so a resumed run can tell which settings it must keep.

- ``schema``: the sections and ``RunConfig``, and the check of every key against them;
- ``load``: a YAML file (a Cerebras ModelZoo file through ``modelzoo``) plus ``key=value`` overrides -> a RunConfig;
- ``recipes``: the one merge of defaults (``resolve``; ``RunConfig.resolve`` calls it), the job recipes (the
  tutorial's short run, fine-tuning) and the settings a resumed run must keep;
- ``rules``: what a resolved config keeps across its fields (the batch against the mesh, ...);
- ``observe``: the ``observe`` section (TensorBoard, W&B, a profile window);
- ``keys``: dotted keys over the nested tree (flatten, nest, merge);
- ``sampling``: generation settings at their numeric edges (``wse generate`` and the tutorial's ``generate_text``).

Pure Python (pydantic + PyYAML): the command line parses and checks a config before it pays for a JAX import, and
must do so to set the emulated CPU device count. The names below are the package's public API; import them from
``runtime.config`` (a job's recipes from ``runtime.config.recipes``).
"""

from runtime.config.keys import flatten, merge_trees
from runtime.config.load import load_config, parse_overrides, read_yaml
from runtime.config.observe import ObserveConfig
from runtime.config.recipes import RESUME_FIXED, RESUME_KEPT, resume_changes, resume_conflicts
from runtime.config.schema import (DEFAULT_CPU_DEVICES, ExecutionConfig, MeshAxes, MeshConfig, RunConfig, TrainConfig,
                                   from_dict, valid_keys)

__all__ = ["DEFAULT_CPU_DEVICES", "ExecutionConfig", "MeshAxes", "MeshConfig", "ObserveConfig", "RESUME_FIXED", "RESUME_KEPT",
           "RunConfig", "TrainConfig", "flatten", "from_dict", "load_config", "merge_trees", "parse_overrides",
           "read_yaml", "resume_changes", "resume_conflicts", "valid_keys"]
