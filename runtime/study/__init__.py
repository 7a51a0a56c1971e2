"""Studies: the Cerebras-GPT paper's two scientific results reproduced in miniature (`wse study mup`, `wse study
scaling`), each point a training run of the ordinary trainer in its own run dir.

- ``settings``: each study's settings, the GPU defaults and the ``--quick`` preset for two CPU cores (pure Python);
- ``vocabulary``: the tokens a study trains on (by default a small BPE trained on the data, and why);
- ``sweep``: points and their run dirs: trained, resumed, read back when finished, divergence recorded;
- ``mup``: the muTransfer study (best learning rate per width, its drift, the proxy's rate at every width);
- ``scaling``: the scaling-law study (the family at 20 tokens per parameter, the largest held out and predicted);
- ``fit``: power laws of loss against compute with their uncertainty; the paper's published law and points;
- ``plots``: the muTransfer figure and the scaling figure;
- ``costs``: the paper's family at full scale on CS-2 systems and H100s, from the planner;
- ``workdir``: a study's directory (resume with the same settings, refuse others), its JSON, the machine.

Nothing here imports JAX at module level: settings errors are one line before JAX starts.
"""
