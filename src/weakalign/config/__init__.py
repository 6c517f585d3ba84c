"""Floor 2: the parameters, checked without torch (docs/ARCHITECTURE.md, "The package": what each module holds, and
the rule that a floor imports only the floors below it)."""
