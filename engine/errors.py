"""User-facing errors: every problem says what is wrong, where, and how to fix it."""

from __future__ import annotations


class UserError(Exception):
    """One or more problems the user can fix; ``problems`` holds one plain sentence each."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(f"- {p}" for p in self.problems))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        return f"{len(self.problems)} problems:\n" + "\n".join(f"- {p}" for p in self.problems)
