"""Floor 5: who labels D_u, and the judges (docs/ARCHITECTURE.md, "The package": what each module holds, and the rule
that a floor imports only the floors below it)."""
