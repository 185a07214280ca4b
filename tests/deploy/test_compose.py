"""docker-compose.yml against the Compose Specification, and against what the service reads.

There is no Docker here: the file is validated with the Compose Specification's JSON schema
(``deploy/compose-spec.json``, vendored from check-jsonschema's copy) before and after variable
interpolation, which is done the way Compose does it. The rest checks what a schema cannot:
that nginx gets the repository's template and every value it needs, that each ``MMSERVE_*``
variable is a real setting, that start order waits on health, and that Docker's stop timeout
leaves the drain its time.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

import jsonschema
import pytest
import yaml

from service.settings import REPO_ROOT, Settings
from tools import nginx

COMPOSE = REPO_ROOT / "docker-compose.yml"
SCHEMA = REPO_ROOT / "deploy" / "compose-spec.json"
ENV: dict[str, str] = {}  # none is required: `docker compose up` works as it is

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})"
)


class MissingVariable(ValueError):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation: $$, $NAME, ${NAME}, ${NAME:-default}, ${NAME:?error}, ..."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["named"] or m["name"]
        op, arg, current = m["op"], m["arg"] or "", env.get(name)
        unset = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in ("-", ":-"):
            return arg if unset else str(current)
        if op in ("?", ":?"):
            if unset:
                raise MissingVariable(f"{name}: {arg}")
            return str(current)
        if op in ("+", ":+"):
            return "" if unset else arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def duration_s(text: str) -> float:
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = interpolate(raw, ENV)
    return document


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_valid_before_and_after_interpolation(
    raw: dict[str, Any], compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    for document in (raw, compose):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
        assert errors == []


@pytest.mark.parametrize(
    "path, bad",
    [
        (["services", "mmserve", "healthcheck", "interval"], 5),  # a number, not a duration
        (["services", "nginx", "depends_on", "mmserve", "condition"], "service_ready"),
        (["services", "mmserve", "stop_grace"], "40s"),  # a misspelt key
    ],
)
def test_the_schema_rejects_mistakes(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator, path: list[str], bad: Any
) -> None:
    broken = copy.deepcopy(compose)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    assert not validator.is_valid(broken)


def test_no_variable_is_required_and_the_port_is_on_loopback(compose: dict[str, Any]) -> None:
    assert compose["services"]["nginx"]["ports"] == ["127.0.0.1:8080:8080"]
    assert compose["services"]["nginx"]["image"] == "nginx:1.27"
    chosen = interpolate(
        yaml.safe_load(COMPOSE.read_text()),
        {"MMSERVE_HTTP_PORT": "9000", "MMSERVE_HTTP_BIND": "0.0.0.0"},
    )
    assert chosen["services"]["nginx"]["ports"] == ["0.0.0.0:9000:8080"]


def test_nginx_gets_the_repository_template_and_every_value(compose: dict[str, Any]) -> None:
    service = compose["services"]["nginx"]
    source, target, mode = service["volumes"][0].split(":")
    assert (COMPOSE.parent / source).resolve() == nginx.TEMPLATE
    assert target.startswith("/etc/nginx/templates/") and target.endswith(".conf.template")
    assert mode == "ro"
    environment = service["environment"]
    placeholders = nginx.placeholders(nginx.TEMPLATE.read_text())
    assert placeholders <= set(environment)
    # The image's entrypoint substitutes only names its filter matches.
    envsubst_filter = re.compile(environment["NGINX_ENVSUBST_FILTER"])
    assert all(envsubst_filter.search(name) for name in placeholders)
    # The one server line, rendered with the service's name, reaches every replica's port.
    host, port = environment[nginx.UPSTREAM].split(":")
    assert host in compose["services"]
    assert port in compose["services"][host]["expose"]
    published = service["ports"][0].split(":")[-1]
    assert published == environment["NGINX_PORT"]


def test_one_body_limit_for_nginx_and_the_service(compose: dict[str, Any]) -> None:
    limit = compose["services"]["nginx"]["environment"]["MMSERVE_MAX_BODY_BYTES"]
    service_env = compose["services"]["mmserve"]["environment"]
    assert service_env["MMSERVE_LIMITS__MAX_BODY_BYTES"] == limit
    assert int(limit) == Settings().limits.max_body_bytes


def _setting_exists(variable: str) -> bool:
    fields: Any = Settings.model_fields
    path = variable.removeprefix("MMSERVE_").lower().split("__")
    for depth, name in enumerate(path):
        if name not in fields:
            return False
        annotation = fields[name].annotation
        if depth < len(path) - 1:
            fields = getattr(annotation, "model_fields", {})
    return True


def test_every_service_variable_is_a_setting(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = compose["services"]["mmserve"]["environment"]
    unknown = [name for name in environment if not _setting_exists(name)]
    assert unknown == []
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    settings = Settings()  # the values parse, and mean what the file says
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 8000, 1)


def test_health_gates_the_start_and_the_stop_leaves_time_to_drain(
    compose: dict[str, Any],
) -> None:
    service = compose["services"]["mmserve"]
    assert service["healthcheck"]["test"][:4] == ["CMD", "python", "-m", "service.healthcheck"]
    assert (REPO_ROOT / "service" / "healthcheck.py").is_file()
    depends = compose["services"]["nginx"]["depends_on"]
    assert depends["mmserve"]["condition"] == "service_healthy"
    environment = service["environment"]
    drain = float(environment["MMSERVE_SHUTDOWN_GRACE_S"]) + float(
        environment["MMSERVE_DRAIN_TIMEOUT_S"]
    )
    assert duration_s(service["stop_grace_period"]) > drain


def test_dockerfile_matches(compose: dict[str, Any]) -> None:
    # Continuation lines joined, as Docker reads them.
    dockerfile = re.sub(r"\\\n\s*", " ", (REPO_ROOT / "Dockerfile").read_text())
    stages = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", dockerfile, re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2, "multi-stage"
    user = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert user and user[-1] not in ("root", "0"), "the server does not run as root"
    assert re.search(r"^HEALTHCHECK\b.*service\.healthcheck", dockerfile, re.MULTILINE)
    assert re.search(r"^COPY\b.*\bonnx_models\b", dockerfile, re.MULTILINE)
    port = compose["services"]["mmserve"]["environment"]["MMSERVE_PORT"]
    assert re.search(rf"^EXPOSE\s+{port}\b", dockerfile, re.MULTILINE)
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored
