"""Training: the loop and what it is made of.

- ``loop``: ``Trainer`` and ``train``, the step loop alone (it never changes its config);
- ``rundir``: the run-dir policy shared by `wse train` and `wse finetune` (create, resume, refuse);
- ``sources``: where batches come from (a token dataset, or packed fine-tuning examples);
- ``state``: what a run compiles, and the checkpointed state (save, restore onto any mesh and mode);
- ``observers``: the metrics log, progress lines, evaluation, the loss plot: one class per sink;
- ``sinks``, ``profiling``: TensorBoard and W&B, and the profile window (the run config's ``observe`` section);
- ``throughput``: the peak FLOP/s that MFU is measured against;
- ``finetune``: fine-tuning, a recipe and a source of packed examples over the same Trainer (`wse finetune`);
- ``evaluate``: held-out loss and perplexity of a token stream or of examples (`wse eval`, the tutorial).
"""

from runtime.train.loop import Trainer, place, train
from runtime.train.observers import (LOSS_PLOT, METRICS_FILE, PLAIN_PROGRESS_SECONDS, TENSORBOARD_DIR, WANDB_DIR,
                                     Evaluation, LossPlot, MetricsLog, Observer, OnStep, Progress, RunContext,
                                     plot_losses, read_metrics)
from runtime.train.profiling import ProfileWindow, Trace
from runtime.train.sinks import TensorBoard, WandB, reporting_observers
from runtime.train.rundir import CONFIG_FILE
from runtime.train.sources import ExampleData, PretrainingData
from runtime.train.throughput import NOMINAL_PEAK, Peak, nominal_peak, peak_flops

__all__ = ["CONFIG_FILE", "Evaluation", "ExampleData", "LOSS_PLOT", "LossPlot", "METRICS_FILE", "MetricsLog",
           "NOMINAL_PEAK", "Observer", "Peak", "OnStep", "PLAIN_PROGRESS_SECONDS", "PretrainingData", "ProfileWindow",
           "Progress", "RunContext", "TENSORBOARD_DIR", "TensorBoard", "Trace", "Trainer", "WANDB_DIR", "WandB",
           "nominal_peak", "peak_flops", "place", "plot_losses", "read_metrics", "reporting_observers", "train"]
