"""Data-set parsers, one file each, named by params.yaml `datasets.<name>.layout` (`@layout("name")`):
`parser(root) -> ParsedDataset` (base.py), the samples table and the evaluation protocols.

Empty on purpose: importing a parser's module runs this package's __init__ (docs/architecture.md).
"""
