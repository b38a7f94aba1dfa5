"""Re-id models: ReIDModel (reid.py) assembled from registry members — backbones/, poolings/,
blocks/, gates/ — built and checked by members.py; heads, checkpoint files, pretrained weights.

Empty on purpose: importing a member module runs this package's __init__, so it imports nothing
(a run's code hash holds only the members it selects: docs/architecture.md)."""
