"""Written with wse-sim at 433514a (before the layout of issue 24): a training checkpoint of a micro model."""
import json, sys
import jax, jax.numpy as jnp, numpy as np, optax
from model.config import build_config
from model.gpt import param_shapes
from runtime.checkpoint import RunCheckpoints

CFG = build_config(dict(name="old", n_layers=2, d_model=16, n_heads=2, d_head=8, d_ffn=32, max_seq_len=16, vocab_size=64))
rng = np.random.default_rng(0)
params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s), jnp.float32), param_shapes(CFG),
                      is_leaf=lambda x: isinstance(x, tuple))
opt_state = optax.adamw(1e-3).init(params)
opt_state = jax.tree.map(lambda x: x + 0.5 if x.dtype == jnp.float32 else x, opt_state)
train_state = json.load(open(sys.argv[2]))
ck = RunCheckpoints(sys.argv[1])
ck.save(2, CFG, params, opt_state, train_state)
ck.close()
