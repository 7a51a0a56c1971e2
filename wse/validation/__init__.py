"""The simulator held against what is published, calibration and validation kept apart: published (the two tables:
outcomes with their configuration, release, source and confidence), shapes (the published models' planning shapes),
compare (each outcome planned and set beside its published figure, with a summary line per table) and fit (the
calibrated parameters, from the calibration table alone: ``python -m wse.validation.fit``)."""
