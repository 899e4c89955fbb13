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


class Problem(str):
    """One problem sentence that also says, as data, which parameter (``field``) or data column role
    (``role``) it is about, so that the UI can mark that widget. Behaves as the plain sentence everywhere else."""

    field: str | None
    role: str | None

    def __new__(cls, text: str, field: str | None = None, role: str | None = None) -> Problem:
        obj = super().__new__(cls, text)
        obj.field, obj.role = field, role
        return obj
