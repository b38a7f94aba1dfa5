"""Multi-scale blocks, named by params.yaml `model.multiscale.block` (`@block("name")`): the lab
log's multi-scale module ("多尺度模块") appended after the backbone's last stage.

A block member builds the whole module: `builder(channels, gate, blocks, **its arguments)` with
`gate(width)` building the configured gate (model.multiscale.gate) at a width of its choice; it
maps B x C x H x W to the same shape (checked when a model is built: docs/extending.md).
"""
