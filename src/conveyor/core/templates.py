"""Tag and text templates: ``myapp-V${R_VERSION}``.

Only ``${NAME}`` placeholders are recognised (and ``$$`` for a literal ``$``),
so a template means the same in a shell, in Conveyor and in the docs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$")


class TemplateError(ValueError):
    """A template is malformed or names a parameter that has no value."""


def placeholders(template: str) -> list[str]:
    """The parameter names a template uses, in order; raises TemplateError if malformed."""
    names = []
    for match in _PLACEHOLDER.finditer(template):
        text = match[0]
        if text == "$$":
            continue
        if text == "$":
            raise TemplateError(
                f"'{template}': a '$' must start a placeholder like '${{R_VERSION}}' "
                "(write '$$' for a literal '$')"
            )
        names.append(match[1])
    return names


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill the placeholders; raises TemplateError naming every missing parameter."""
    missing = [name for name in placeholders(template) if name not in values]
    if missing:
        listed = ", ".join(dict.fromkeys(missing))
        raise TemplateError(
            f"'{template}' needs parameter(s) {listed}; pass --param {missing[0]}=... "
            "or set it in the environment"
        )

    def fill(match: re.Match[str]) -> str:
        return "$" if match[0] == "$$" else values[match[1]]

    return _PLACEHOLDER.sub(fill, template)
