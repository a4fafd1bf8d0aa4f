"""The one reader of the course's notebook sources: plain Python files in jupytext's "percent" format.

Every cell starts with a header line; what follows the `# %%` says what the cell is:

    # %% [markdown]                 text; every line starts with "# " (or is a lone "#")
    # %%                            code
    # %% tags=nbval-ignore-output   code with cell tags (comma-separated)
    # %% export minigemma.rope.apply_rope ...      (lessons) the package's own source of these objects
    # %% include check_catches                      (lessons) a helper cell shared by several lessons
    # %% solution rope-apply                       (exercises) the learner's cell
    # %% grade rope-apply points=4                 (exercises) the check of a task

Because the sources are Python, linters and the duplicate finder read the code, and nothing needs escaping.
Used by notebooks/nbbuild.py (lessons) and exercises/build.py (exercises); each says which kinds it accepts.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class SourceError(ValueError):
    """A source file breaks the format; the message names the file and line."""


@dataclass
class Cell:
    kind: str                        # "markdown", "code", or the word after "# %%" (export, solution, ...)
    args: list[str]                  # the words after the kind
    options: dict[str, str]          # key=value words, e.g. {"tags": "nbval-ignore-output", "points": "4"}
    line: int                        # the header's line number, for error messages
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip()


def parse_header(line: str, where: str) -> Cell:
    words = line[len("# %%"):].split()
    if words[:1] == ["[markdown]"]:
        if len(words) > 1:
            raise SourceError(f"{where}: a markdown header takes nothing after [markdown]: {line!r}")
        return Cell("markdown", [], {}, 0)
    options = dict(word.split("=", 1) for word in words if "=" in word)
    plain = [word for word in words if "=" not in word]
    kind = plain[0] if plain else "code"
    return Cell(kind, plain[1:], options, 0)


def split_cells(text: str, name: str, kinds: set[str]) -> list[Cell]:
    """The cells of a source, in order. Lines before the first header may only be comments."""
    cells: list[Cell] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# %%"):
            cell = parse_header(line, f"{name}:{number}")
            if cell.kind not in kinds:
                raise SourceError(f"{name}:{number}: unknown cell kind {cell.kind!r} (this file may use: "
                                  f"{', '.join(sorted(kinds))})")
            cell.line = number
            cells.append(cell)
        elif cells:
            cells[-1].lines.append(line)
        elif line.strip() and not line.startswith("#"):
            raise SourceError(f"{name}:{number}: code before the first '# %%' cell header")
    for cell in cells:
        while cell.lines and not cell.lines[-1].strip():
            cell.lines.pop()
        if cell.kind == "markdown":
            cell.lines = markdown_lines(cell.lines, f"{name}:{cell.line}")
    return cells


def markdown_lines(lines: list[str], where: str) -> list[str]:
    for line in lines:
        if line and line != "#" and not line.startswith("# "):
            raise SourceError(f"{where}: markdown lines must start with '# ' ({line!r})")
    return [line[2:] for line in lines]


def to_source(cells: list[tuple[str, str]]) -> str:
    """(header, body) pairs back to a source file: the inverse of split_cells, used when converting notebooks."""
    parts = []
    for header, body in cells:
        if header == "# %% [markdown]":
            body = "\n".join(("# " + line) if line else "#" for line in body.splitlines())
        parts.append(header + ("\n" + body if body else ""))
    return "\n\n".join(parts) + "\n"
