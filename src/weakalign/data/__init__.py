"""Floor 3: the preference data (docs/ARCHITECTURE.md, "The package": what each module holds, and the rule that a
floor imports only the floors below it)."""
