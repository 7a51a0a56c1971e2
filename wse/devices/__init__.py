"""The device wing: training on a mesh of GPUs (H100, H200) or CPU devices, from the figures of one device.

- specs: devices as data with sources; files: device descriptions from YAML (``kind: device``) and ``find_device``.
- hostlink: the bytes the runtime's streaming step moves over the host link.
- cost_model: one training step on the mesh (data, streaming over the host link, 1F1B); plan: the device plan.

It builds on the shared floor (wse.shape, wse.costs, wse.grid, ...) and never imports the wafer wing (wse.wafer).
"""
