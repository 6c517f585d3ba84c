"""Floor 3, beside data/: the models (docs/ARCHITECTURE.md, "The package": what each module holds, and the rule that
a floor imports only the floors below it)."""
