"""Floor 1: files and rows, what every other floor reads and writes (docs/ARCHITECTURE.md, "The package": what each
module holds, and the rule that a floor imports only the floors below it)."""
