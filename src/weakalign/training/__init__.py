"""Floor 4: training through TRL (docs/ARCHITECTURE.md, "The package": what each module holds, and the rule that a
floor imports only the floors below it)."""
