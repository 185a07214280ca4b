"""The repository's nginx template, rendered for given replicas, and a main config around it.

``deploy/nginx.conf.template`` is an http-level snippet with ``${NAME}`` placeholders, the
format the official nginx image renders with envsubst (see docker-compose.yml). Here the same
file is rendered in Python: the line that names ``${MMSERVE_UPSTREAM}`` is written once per
replica, and :func:`main_config` wraps the result in a config whose pid, logs and temporary
files all live under one prefix folder, so Debian's nginx runs without root and without
touching ``/var``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from service.settings import REPO_ROOT

TEMPLATE = REPO_ROOT / "deploy" / "nginx.conf.template"
UPSTREAM = "MMSERVE_UPSTREAM"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def render(template: str, upstreams: Sequence[str], values: Mapping[str, str]) -> str:
    """Fill every ``${NAME}``; a name without a value is an error, as a typo would be."""
    if not upstreams:
        raise ValueError("at least one upstream address is needed")
    missing = placeholders(template) - set(values) - {UPSTREAM}
    if missing:
        raise ValueError(f"no value for {', '.join(sorted(missing))} in the nginx template")
    marker = "${" + UPSTREAM + "}"
    lines: list[str] = []
    for line in template.splitlines(keepends=True):
        if marker in line:
            lines.extend(line.replace(marker, address) for address in upstreams)
        else:
            lines.append(line)
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], "".join(lines))


def main_config(site: Path, prefix: Path) -> str:
    """A whole nginx.conf that runs in the foreground and keeps its files under ``prefix``."""
    temp = "\n".join(f"    {name}_temp_path {prefix / name};" for name in _TEMP_PATHS)
    return f"""\
daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log stderr notice;

events {{
    worker_connections 1024;
}}

http {{
    default_type application/octet-stream;
{temp}
    include {site};
}}
"""
