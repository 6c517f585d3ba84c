"""Floor 6: the numbers of one run (docs/ARCHITECTURE.md, "The package": what each module holds, and the rule that a
floor imports only the floors below it)."""
