"""Data-parallel execution: the baseline every other mode is checked against.

The whole model runs on every replica; batch rows are split over ``data`` (and over ``stage``, which outside the
pipelined mode is just more replicas). Parameters are replicated, or with ``fsdp=True`` sharded over ``data`` along
their ``embed`` dimension (ZeRO-3/FSDP: GSPMD gathers each weight for use and reduce-scatters its gradient). A
``model`` axis shards attention heads, FFN units and the vocabulary (tensor parallelism) through the same sharding
rules; XLA inserts the collectives.
"""

from __future__ import annotations

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from model import gpt
from runtime.execution.base import Executor


class DataParallelExecutor(Executor):
    mode = "data"

    def loss_sum(self, params, tokens, targets, mask):
        rows = NamedSharding(self.mesh, P(self.batch_axes))
        x = gpt.embed(self.cfg, params, tokens, dtype=self.dtype)
        x = jax.lax.with_sharding_constraint(x, rows)
        x = gpt.run_blocks(self.cfg, params["blocks"], x, remat=self.remat, attention=self.attention,
                           layer_loop=self.layer_loop)
        return self._head_loss(params, x, targets, mask)
