"""The lab log's attention gates (entries 196-203), one file each, named by params.yaml
`model.multiscale.gate` (`@gate("name")`).

Each entry of the log defines a `ChannelAttention(channel, reduction=16)` class returning
`gate * x`; the log's code is the definition, even where it departs from the paper it cites.
The modules compute exactly the same functions and keep the log's submodule names (`avgpool`,
`maxpool`, `se`, `conv1`, `sigmoid`), so a state_dict of the log's class loads into them strictly
(tests/test_gates.py checks this against the log itself). The contract of every gate: built as
`builder(channels, reduction, **its arguments)`, it maps B x C x H x W to `weights * x` of the
same shape (checked when a model is built: docs/extending.md).
"""
