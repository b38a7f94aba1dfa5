"""Loss terms, one file each, named by the sections of params.yaml `loss` (`@loss("name")`).

Every section that is on (`enabled: true`; `id`, which has no switch, always is) selects its term;
the terms add up in the order of the section's keys (built-in terms in the schema's order, then
plugin terms by name). The contract of a term is ccreid.engine.losses.term.LossTerm.

Empty on purpose: importing a term's module runs this package's __init__ (docs/architecture.md).
"""
