"""Docstrings as command-line help: argparse prints them raw, so their markup goes.

``python -m service`` -> python -m service; :mod:`service.cli` ->
service.cli; :class:`~service.settings.Settings` -> Settings (the ``~`` form shows the
last name, as Sphinx does).
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    short, target = match.groups()
    return target.rpartition(".")[2] if short else target


def plain(doc: str | None) -> str:
    """``doc`` without reStructuredText's inline literals and roles."""
    return _ROLE.sub(_role, doc or "").replace("``", "")
