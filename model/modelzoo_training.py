"""The training half of a Cerebras ModelZoo config (optimizer, learning-rate schedule, precision) and the tree reader
that both halves use (model/modelzoo.py reads the model section).

``optimizer_recipe`` keeps AdamW's weight decay and clipping (and Adam's eps for the model); ``schedule_recipe`` turns
the ModelZoo schedulers (2.x ``SequentialLR`` of ``LinearLR`` / ``CosineDecayLR`` / ``ConstantLR``, or 1.x
``learning_rate`` lists) into a peak LR, warmup and decay steps, decay shape and final ratio; ``precision_dtype`` reads
the compute dtype. Anything the project's optimizer or schedule cannot reproduce raises ModelZooError naming it.

Pure Python: no JAX.
"""

from __future__ import annotations

import math

from model.errors import ModelConfigError

MISSING = object()


class ModelZooError(ModelConfigError):
    """A ModelZoo config this project cannot run as written (an unsupported field or value, named in one line)."""


class Reader:
    """A config tree that remembers which paths were read, so the rest can be listed as ignored."""

    def __init__(self, tree: dict, file: str):
        self.tree, self.file, self.read = tree, file, set()

    def peek(self, *path: str, default=MISSING):
        """The value at ``path`` (``default`` when absent), not counted as read."""
        node = self.tree
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def get(self, *path: str, default=MISSING):
        """The value at ``path``, counted as read unless it is a mapping (whose own fields are counted one by one)."""
        node = self.peek(*path)
        if node is MISSING:
            return default
        if not isinstance(node, dict):
            self.read.add(path)
        return node

    def fail(self, path: tuple[str, ...], value, want: str) -> ModelZooError:
        return ModelZooError(f"{self.file}: {'.'.join(path)} is {value!r}; {want}")

    def ignored(self) -> list[str]:
        out: list[str] = []

        def walk(node, path):
            if path in self.read:
                return
            if not isinstance(node, dict) or not any(r[:len(path)] == path for r in self.read):
                out.append(".".join(path))
                return
            for k, v in node.items():
                walk(v, path + (str(k),))

        for k, v in self.tree.items():
            walk(v, (str(k),))
        return out


def want(r: Reader, base: tuple, key: str, ok, need: str, default=None):
    """The value of ``base + key`` (``default`` when absent); ModelZooError saying ``need`` unless ``ok(value)``."""
    value = r.get(*base, key, default=default)
    if not ok(value):
        raise r.fail(base + (key,), value, need)
    return value


def optimizer_recipe(r: Reader, base: tuple, model: dict, clip: tuple) -> dict:
    """Weight decay and clipping for the recipe, Adam's eps for the model; anything but AdamW at betas (0.9, 0.95)
    with bias correction is refused (those are fixed in runtime/execution/optim.py)."""
    recipe: dict = {}
    value = r.get(*clip, default=None)
    if value is not None:
        recipe["grad_clip"] = float(value)
    section = r.peek(*base, default=None)
    if section is None:
        return recipe
    if not isinstance(section, dict):
        raise r.fail(base, section, "it must be a mapping such as {AdamW: {weight_decay: 0.1}}")
    if "optimizer_type" in section:  # 1.x: the settings sit beside the type
        kind, params = r.get(*base, "optimizer_type"), base
    elif len(section) == 1:
        kind = next(iter(section))
        params = base + (kind,)
    else:
        raise r.fail(base, sorted(section), "it must name one optimizer, e.g. {AdamW: {...}}")
    if str(kind).lower() != "adamw":
        raise r.fail(base, kind, "not supported: wse train uses AdamW")
    betas = r.get(*params, "betas", default=None) or [r.get(*params, "beta1", default=0.9),
                                                       r.get(*params, "beta2", default=0.95)]
    if not (len(betas) == 2 and math.isclose(betas[0], 0.9) and math.isclose(betas[1], 0.95)):
        raise r.fail(params + ("betas",), list(betas), "not supported: wse train's AdamW uses betas 0.9, 0.95")
    want(r, params, "correct_bias", lambda v: v in (True, None), "not supported: wse train's AdamW corrects its bias")
    want(r, params, "amsgrad", lambda v: not v, "not supported: wse train's AdamW is not AMSGrad")
    want(r, params, "max_gradient_value", lambda v: v is None, "not supported: wse train clips by global norm only")
    eps = r.get(*params, "eps", default=None)
    if eps is not None:
        model["adam_eps"] = float(eps)
    for key in ("weight_decay", "weight_decay_rate"):
        wd = r.get(*params, key, default=None)
        if wd is not None:
            recipe["weight_decay"] = float(wd)
    if "grad_clip" not in recipe and r.peek(*params, "max_gradient_norm", default=None) is not None:
        recipe["grad_clip"] = float(r.get(*params, "max_gradient_norm"))
    return recipe


_KINDS = {"linear": "linear", "linearlr": "linear", "cosinedecay": "cosine", "cosinedecaylr": "cosine",
          "constant": "constant", "constantlr": "constant"}
_SHAPE = "wse train runs a linear warmup from 0, then one linear or cosine decay (then optionally a constant)"


def _phases(r: Reader, path: tuple) -> list[tuple[str, dict]]:
    """The schedule as (kind, {initial, end, iters}) phases, from 2.x ``schedulers`` or 1.x ``learning_rate``."""
    value = r.get(*path, default=None)
    if value is None:
        return []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [("constant", {"initial": float(value), "end": float(value), "iters": None})]
    items = value if isinstance(value, list) else [value]
    if len(items) == 1 and isinstance(items[0], dict) and "SequentialLR" in items[0]:
        items = (items[0]["SequentialLR"] or {}).get("schedulers", [])
    elif items and "scheduler" not in items[0] and len(items) > 1:
        raise r.fail(path, [next(iter(i)) for i in items], "give one scheduler (SequentialLR for a warmup and decay)")
    phases = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item:
            raise r.fail(path, item, "each scheduler must be a mapping")
        name, params = (item["scheduler"], item) if "scheduler" in item else next(iter(item.items()))
        kind = _KINDS.get(str(name).lower())
        if kind is None or not isinstance(params, dict):
            raise r.fail(path, name, f"not supported: {_SHAPE}")
        lr = params.get("learning_rate")
        iters = next((params[k] for k in ("total_iters", "steps", "decay_steps") if params.get(k) is not None), None)
        phases.append((kind, {"initial": float(params.get("initial_learning_rate", lr if lr is not None else 0.0)),
                              "end": float(params.get("end_learning_rate", lr if lr is not None else 0.0)),
                              "iters": iters, "label": f"{'.'.join(path)} phase {i + 1} ({name})"}))
    return phases


def schedule_recipe(r: Reader, path: tuple) -> dict:
    """Peak LR, warmup and decay steps, decay shape and final LR ratio from the schedule's phases."""
    phases = _phases(r, path)
    if not phases:
        return {}
    out = {"warmup_steps": 0}
    kind, p = phases[0]
    if kind == "linear" and p["end"] > p["initial"]:
        if p["initial"] != 0:
            raise ModelZooError(f"{r.file}: {p['label']} initial_learning_rate is {p['initial']:g}; "
                                f"not supported: {_SHAPE}")
        out["warmup_steps"] = int(p["iters"] or 0)
        phases = phases[1:]
        peak = p["end"]
    else:
        peak = p["initial"]
    out["lr"], end = peak, peak
    if phases and phases[0][0] in ("linear", "cosine"):
        kind, p = phases.pop(0)
        if not math.isclose(p["initial"], peak) or p["iters"] is None:
            raise ModelZooError(f"{r.file}: {p['label']} initial_learning_rate is {p['initial']:g} over "
                                f"{p['iters']} steps; the decay must start at the peak {peak:g} and give its steps")
        out.update(decay=kind, decay_steps=out["warmup_steps"] + int(p["iters"]))
        end = p["end"]
    if phases and phases[0][0] == "constant" and math.isclose(phases[0][1]["initial"], end):
        phases.pop(0)
    if phases or peak <= 0:
        what = f"{phases[0][1]['label']} is not supported" if phases else f"a peak learning rate of {peak:g} is not positive"
        raise ModelZooError(f"{r.file}: {what}; {_SHAPE}")
    out["min_lr_ratio"] = round(end / peak, 12)
    return out


def precision_dtype(r: Reader, where: dict) -> str | None:
    """``bfloat16`` or ``float32`` compute when the file says so (2.x ``precision``, 1.x the model's
    ``mixed_precision`` / ``fp16_type`` / ``use_bfloat16``); float16 and cbfloat16 stay listed as ignored (wse
    computes in float32 or bfloat16)."""
    places = ([where["precision"]] if where["precision"] else []) + [where["model"]]
    keys = ("enabled", "mixed_precision", "fp16_type", "use_bfloat16")
    found = {k: v for place in reversed(places) for k in keys if (v := r.peek(*place, k, default=None)) is not None}
    enabled = found.get("enabled", found.get("mixed_precision"))
    half = found.get("fp16_type", "bfloat16" if found.get("use_bfloat16") else None)
    if enabled is None or (enabled and half != "bfloat16"):
        return None
    for place in places:
        for key in keys:
            r.get(*place, key, default=None)
    return "bfloat16" if enabled else "float32"
