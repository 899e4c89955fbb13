"""The audio family's helpers: speech recognition checks before launch (checks) and training pieces (train)."""
