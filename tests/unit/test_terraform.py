"""Offline checks of the Terraform in ``terraform/``: it parses, it is typed and described, the
environments wire the modules correctly, nothing secret is written down, prod is hardened, and it is
laid out the way ``terraform fmt`` would lay it out (the binary cannot be installed here, so the
layout rules are checked by :func:`fmt_problems`). checkov runs in ``test_terraform_checkov.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from tidelake.contracts import TOPICS

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
MODULES = TERRAFORM / "modules"
ENVS = TERRAFORM / "envs"
ROOTS = [*sorted(p for p in ENVS.iterdir() if p.is_dir()), TERRAFORM / "bootstrap"]
MODULE_DIRS = sorted(p for p in MODULES.iterdir() if p.is_dir())
TF_FILES = sorted(TERRAFORM.rglob("*.tf"))
TFVARS_FILES = sorted(TERRAFORM.rglob("*.tfvars"))

EXPECTED_MODULES = {"network", "logs", "lake", "kafka_msk", "kafka_confluent", "dagster", "api"}
MODULE_META_ARGS = {"source", "version", "providers", "count", "for_each", "depends_on"}
SECRET_NAME = re.compile(r"(password|secret|token|api_key|private_key|credential)", re.IGNORECASE)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals (``'"x"'``); strip them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _clean(node: Any) -> Any:
    """Drop python-hcl2's bookkeeping keys (``__is_block__``, ``__comments__``), unquote labels."""
    if isinstance(node, dict):
        return {unquote(k): _clean(v) for k, v in node.items() if not str(k).startswith("__")}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


@cache
def parse(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return _clean(hcl2.load(f))


def blocks(directory: Path, kind: str) -> dict[str, dict[str, Any]]:
    """All top-level ``kind`` blocks (variable, output, module) of a directory, by name."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for block in parse(path).get(kind, []):
            for name, body in block.items():
                found[unquote(name)] = body
    return found


def resources(directory: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """``(type, name, body)`` of every resource in a directory."""
    found = []
    for path in sorted(directory.glob("*.tf")):
        for block in parse(path).get("resource", []):
            for rtype, named in block.items():
                for rname, body in named.items():
                    found.append((unquote(rtype), unquote(rname), body))
    return found


def env_module_calls(env: Path) -> dict[str, dict[str, Any]]:
    return blocks(env, "module")


# --- parsing and structure ----------------------------------------------------------------------


@pytest.mark.parametrize("path", TF_FILES + TFVARS_FILES, ids=_rel)
def test_every_terraform_file_parses(path: Path) -> None:
    assert isinstance(parse(path), dict)


def test_there_is_one_module_folder_per_concern() -> None:
    assert {p.name for p in MODULE_DIRS} == EXPECTED_MODULES


@pytest.mark.parametrize("module", MODULE_DIRS, ids=lambda p: p.name)
def test_every_module_has_main_variables_outputs_versions_and_a_readme(module: Path) -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (module / name).is_file(), f"{_rel(module)} lacks {name}"
    readme = (module / "README.md").read_text()
    assert "## Creates" in readme and "## Needs" in readme, f"{_rel(module)}/README.md sections"


@pytest.mark.parametrize("directory", MODULE_DIRS + ROOTS, ids=_rel)
def test_every_variable_has_a_type_and_a_description(directory: Path) -> None:
    variables = blocks(directory, "variable")
    assert variables, f"{_rel(directory)} declares no variable"
    for name, body in variables.items():
        assert "type" in body, f"{_rel(directory)}: variable {name} has no type"
        assert unquote(body.get("description", "")).strip(), f"{name} has no description"


@pytest.mark.parametrize("directory", MODULE_DIRS + ROOTS, ids=_rel)
def test_every_output_has_a_description(directory: Path) -> None:
    for name, body in blocks(directory, "output").items():
        assert unquote(body.get("description", "")).strip(), f"output {name} has no description"


@pytest.mark.parametrize("directory", MODULE_DIRS + ROOTS, ids=_rel)
def test_variables_that_hold_secrets_are_sensitive(directory: Path) -> None:
    for name, body in blocks(directory, "variable").items():
        if SECRET_NAME.search(name) and not name.endswith(("_arn", "_days", "_arns")):
            assert body.get("sensitive") is True, f"variable {name} must be sensitive = true"


@pytest.mark.parametrize("directory", MODULE_DIRS + ROOTS, ids=_rel)
def test_providers_are_pinned_and_only_roots_configure_them(directory: Path) -> None:
    terraform = [t for p in directory.glob("*.tf") for t in parse(p).get("terraform", [])]
    required = [rp for t in terraform for rp in t.get("required_providers", [])]
    assert required, f"{_rel(directory)} pins no provider"
    for providers in required:
        for name, spec in providers.items():
            assert "<" in spec.get("version", ""), f"{name} needs an upper version bound"
    configures = any("provider" in parse(p) for p in directory.glob("*.tf"))
    assert configures == (directory in ROOTS), "only roots may configure providers"


# --- environments compose the modules correctly -------------------------------------------------


@pytest.mark.parametrize("env", ROOTS[:-1], ids=lambda p: p.name)
def test_every_module_an_env_uses_exists_and_gets_its_required_variables(env: Path) -> None:
    calls = env_module_calls(env)
    assert calls, f"{env.name} uses no module"
    for call_name, args in calls.items():
        source = (env / unquote(args["source"])).resolve()
        assert source.is_dir() and source.parent == MODULES, f"module.{call_name}: {source}"
        variables = blocks(source, "variable")
        required = {n for n, body in variables.items() if "default" not in body}
        passed = set(args) - MODULE_META_ARGS
        assert required <= passed, f"module.{call_name} misses {sorted(required - passed)}"
        assert passed <= set(variables), (
            f"module.{call_name}: unknown {sorted(passed - set(variables))}"
        )


@pytest.mark.parametrize("env", ROOTS[:-1], ids=lambda p: p.name)
def test_every_module_output_an_env_reads_exists(env: Path) -> None:
    calls = env_module_calls(env)
    text = "\n".join(p.read_text() for p in env.glob("*.tf"))
    for call_name, output in re.findall(r"\bmodule\.(\w+)\.(\w+)", text):
        source = (env / unquote(calls[call_name]["source"])).resolve()
        assert output in blocks(source, "output"), f"module.{call_name}.{output} is not an output"


def test_every_module_is_used_by_an_environment() -> None:
    used = {
        Path(unquote(args["source"])).name
        for env in ROOTS[:-1]
        for args in env_module_calls(env).values()
    }
    assert used == EXPECTED_MODULES


@pytest.mark.parametrize("env", ROOTS[:-1], ids=lambda p: p.name)
def test_envs_keep_state_in_s3_with_locking_and_encryption(env: Path) -> None:
    backend = parse(env / "backend.tf")["terraform"][0]["backend"][0]
    s3 = backend["s3"]
    assert s3["encrypt"] is True and s3["use_lockfile"] is True
    assert unquote(s3["key"]) == f"tidelake/{env.name}/terraform.tfstate"
    assert (env / "backend.hcl.example").is_file()


@pytest.mark.parametrize("env", ROOTS[:-1], ids=lambda p: p.name)
def test_example_tfvars_set_every_required_variable_and_nothing_unknown(env: Path) -> None:
    variables = blocks(env, "variable")
    tfvars = parse(env / f"{env.name}.tfvars")
    required = {n for n, body in variables.items() if "default" not in body}
    assert required <= set(tfvars), f"{env.name}.tfvars misses {sorted(required - set(tfvars))}"
    assert set(tfvars) <= set(variables), f"unknown: {sorted(set(tfvars) - set(variables))}"


def test_prod_is_hardened() -> None:
    calls = env_module_calls(ENVS / "prod")
    assert calls["dagster"]["db_multi_az"] is True
    assert calls["dagster"]["deletion_protection"] is True
    assert calls["api"]["deletion_protection"] is True
    assert calls["lake"]["force_destroy"] is False
    assert calls["network"]["single_nat_gateway"] is False
    for module in calls.values():
        assert "secret_recovery_window_days" not in module, "prod keeps the 30-day recovery window"


def test_the_dagster_ui_is_never_open_to_the_internet() -> None:
    for env in ROOTS[:-1]:
        tfvars = parse(env / f"{env.name}.tfvars")
        assert "0.0.0.0/0" not in tfvars["dagster_allowed_cidrs"]
    condition = blocks(MODULES / "dagster", "variable")["allowed_cidrs"]["validation"][0]
    assert "0.0.0.0/0" in condition["condition"]


# --- no literal secrets -------------------------------------------------------------------------

_LITERAL_SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "Confluent-style API secret": re.compile(r"\b[A-Za-z0-9+/]{64}\b"),
}


def _walk(node: Any, path: tuple[str, ...] = ()) -> Any:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, path)
    else:
        yield path, node


def literal_secrets(parsed: dict[str, Any]) -> list[str]:
    """Attributes named like a secret whose value is a literal rather than a reference."""
    found = []
    for keys, value in _walk(parsed):
        attribute = keys[-1] if keys else ""
        if not SECRET_NAME.search(attribute) or not isinstance(value, str):
            continue
        if (
            attribute.endswith(("_arn", "_id", "_days", "_wo_version"))
            or attribute == "description"
        ):
            continue
        literal = unquote(value)
        is_reference = "${" in literal or literal.startswith(("var.", "local.", "module."))
        if not (is_reference or literal in ("", "{}")):
            found.append(f"{'.'.join(keys)} = {value}")
    return found


def test_literal_secret_detector_flags_literals_and_accepts_references() -> None:
    hcl = (
        'resource "aws_db_instance" "x" {\n  password = "hunter2hunter2"\n'
        "  credentials {\n    secret = confluent_api_key.m.secret\n  }\n}\n"
    )
    assert literal_secrets(_clean(hcl2.loads(hcl))) == [
        'resource.aws_db_instance.x.password = "hunter2hunter2"'
    ]


@pytest.mark.parametrize("path", TF_FILES + TFVARS_FILES, ids=_rel)
def test_no_secret_is_written_as_a_literal(path: Path) -> None:
    text = path.read_text()
    for what, pattern in _LITERAL_SECRET_PATTERNS.items():
        assert not pattern.search(text), f"{_rel(path)} contains what looks like a {what}"
    assert literal_secrets(parse(path)) == [], _rel(path)


# --- the image's Dagster instance matches the task definitions ----------------------------------


def _env_refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["env"]} if set(node) == {"env"} else set()
        return own.union(*(_env_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_env_refs(v) for v in node))
    return set()


def test_deploy_dagster_yaml_reads_only_variables_the_dagster_module_sets() -> None:
    instance = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    main = (MODULES / "dagster" / "main.tf").read_text()
    for name in _env_refs(instance):
        assert re.search(rf"\b{name}\s*=|\"{name}\"", main), f"dagster.yaml reads unset ${name}"


def test_deploy_dagster_yaml_configures_known_classes_with_known_keys() -> None:
    from dagster_aws.ecs import EcsRunLauncher
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    instance = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_aws.ecs", "EcsRunLauncher")
    assert set(launcher["config"]) <= set(EcsRunLauncher.config_type())
    logs = instance["compute_logs"]["config"]
    assert set(logs) <= set(S3ComputeLogManager.config_type())
    assert "postgres" in instance["storage"]
    limits = instance["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {
        "key": "tidelake/ingest_topic",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in limits


def test_the_run_container_is_named_as_the_launcher_expects() -> None:
    instance = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    main = (MODULES / "dagster" / "main.tf").read_text()
    assert f'name        = "{instance["run_launcher"]["config"]["container_name"]}"' in main


def test_dockerfile_bakes_the_instance_where_dagster_home_points() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY deploy/dagster.yaml /opt/dagster/home/dagster.yaml" in dockerfile
    assert "DAGSTER_HOME=/opt/dagster/home" in dockerfile
    assert 'dagster_home = "/opt/dagster/home"' in (MODULES / "dagster" / "main.tf").read_text()
    assert re.search(r"^USER \d+", dockerfile, re.MULTILINE), "the image must not run as root"


def test_dockerfile_ships_a_parsed_dbt_project_and_writable_dbt_folders() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY dbt_project ./dbt_project" in dockerfile
    assert (ROOT / "dbt_project" / "dbt_project.yml").is_file()
    assert "TIDELAKE_DBT_PROJECT_DIR=/opt/tidelake/dbt_project" in dockerfile
    # The root filesystem is read-only on ECS: dbt may write only below /tmp at run time.
    assert "DBT_TARGET_PATH=/tmp/" in dockerfile and "DBT_LOG_PATH=/tmp/" in dockerfile
    parse = dockerfile.index("ensure_manifest(dbt_project())")
    assert parse < dockerfile.index("USER 10001"), (
        "parsed at build time, before the image is sealed"
    )


# --- the Confluent topics are the contract ------------------------------------------------------


def test_confluent_topics_and_retention_match_the_contract() -> None:
    main = parse(MODULES / "kafka_confluent" / "main.tf")
    topics = next(local["topics"] for local in main["locals"] if "topics" in local)
    declared = {unquote(name): spec["retention_days"] for name, spec in topics.items()}
    assert declared == {name: c.retention_days for name, c in TOPICS.items()}


# --- terraform fmt layout -----------------------------------------------------------------------


@dataclass
class _Line:
    text: str
    net_brackets: int
    equals_at: int | None  # column of the assignment's "=", if the line is a one-line assignment


def _scan(line: str) -> _Line:
    """Bracket balance and the first top-level ``=`` of one line, skipping strings and comments.

    ``${ ... }`` inside a string opens and closes on the same line, so it does not change the
    balance; ``==``, ``!=``, ``<=``, ``>=`` and ``=>`` are operators, not assignments.
    """
    depth = 0
    first_equals: int | None = None
    brackets_after_equals = 0
    stack: list[str] = []  # "s" inside a string, "i" inside ${...} within a string
    i = 0
    while i < len(line):
        ch = line[i]
        mode = stack[-1] if stack else "code"
        if mode == "s":
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                stack.pop()
            elif line.startswith("${", i) or line.startswith("%{", i):
                stack.append("i")
                i += 2
                continue
            i += 1
            continue
        if ch == '"':
            stack.append("s")
        elif ch == "#" or line.startswith("//", i):
            break
        elif ch in "{[(":
            if mode == "i" and ch == "{":
                stack.append("b")
            depth += 1
            if first_equals is not None:
                brackets_after_equals += 1
        elif ch in "}])":
            if mode == "i" and ch == "}":
                stack.pop()
            else:
                if mode == "b" and ch == "}":
                    stack.pop()
                depth -= 1
                if first_equals is not None:
                    brackets_after_equals -= 1
        elif ch == "=" and not stack:
            prev = line[i - 1] if i else ""
            nxt = line[i + 1] if i + 1 < len(line) else ""
            if prev not in "=!<>" and nxt not in "=>" and first_equals is None and line[:i].strip():
                first_equals = i
        i += 1
    equals_at = first_equals if first_equals is not None and brackets_after_equals == 0 else None
    return _Line(line, depth, equals_at)


def fmt_problems(text: str) -> list[str]:
    """Where ``text`` differs from ``terraform fmt`` in the rules that matter for review.

    Mirrors hclwrite's formatter: two spaces per open bracket level, and in a run of consecutive
    one-line assignments (a blank line, a comment line or a multi-line value ends the run) every
    ``=`` sits one column after the longest name. Also: no tabs, no trailing blanks, one space after
    ``=``, exactly one newline at the end.
    """
    problems = []
    if "\t" in text:
        problems.append("contains a tab")
    if not text.endswith("\n") or text.endswith("\n\n"):
        problems.append("must end with exactly one newline")
    lines = [_scan(raw) for raw in text.split("\n")[:-1]]
    indents: list[int] = []
    for number, line in enumerate(lines, 1):
        if line.text != line.text.rstrip():
            problems.append(f"{number}: trailing whitespace")
        if not line.text.strip():
            continue
        net = line.net_brackets
        while net < 0 and indents:
            if -net >= indents[-1]:
                net += indents.pop()
            else:
                indents[-1] += net
                net = 0
        expected = 2 * len(indents)
        if line.net_brackets > 0:
            indents.append(line.net_brackets)
        actual = len(line.text) - len(line.text.lstrip(" "))
        if actual != expected:
            problems.append(f"{number}: indent {actual}, expected {expected}")
        if line.equals_at is not None:
            after = line.text[line.equals_at + 1 : line.equals_at + 3]
            if not after.startswith(" ") or after == "  ":
                problems.append(f"{number}: one space after '='")
    run: list[tuple[int, _Line]] = []
    for number, line in [*enumerate(lines, 1), (0, _Line("", 0, None))]:
        if line.equals_at is not None:
            run.append((number, line))
            continue
        if run:
            column = max(len(ln.text[: ln.equals_at].rstrip()) for _, ln in run) + 1
            problems.extend(
                f"{n}: '=' at column {ln.equals_at}, terraform fmt puts it at {column}"
                for n, ln in run
                if ln.equals_at != column
            )
        run = []
    return problems


def test_fmt_checker_knows_terraform_fmt_layout() -> None:
    good = (
        'resource "a" "b" {\n  name  = "x"\n  count = 1\n\n'
        '  tags = merge(var.tags, {\n    Name = "y=z"\n  })\n}\n'
    )
    assert fmt_problems(good) == []
    misaligned = "locals {\n  a = 1\n  bbb = 2\n}\n"
    assert fmt_problems(misaligned) == ["2: '=' at column 4, terraform fmt puts it at 6"]
    assert fmt_problems("x {\n   a = 1\n}\n") == ["2: indent 3, expected 2"]
    interpolated = 'x {\n  a   = "${var.b}-${join(",", ["c"])}"\n  bcd = { e = 1 }\n}\n'
    assert fmt_problems(interpolated) == []


@pytest.mark.parametrize(
    "path", TF_FILES + TFVARS_FILES + sorted(TERRAFORM.rglob("*.hcl*")), ids=_rel
)
def test_terraform_files_are_laid_out_as_terraform_fmt_would(path: Path) -> None:
    assert fmt_problems(path.read_text()) == []


# --- the ingestion worker service ---------------------------------------------------------------

DAGSTER = MODULES / "dagster"


def _resource(rtype: str, name: str) -> dict[str, Any]:
    return next(body for t, n, body in resources(DAGSTER) if (t, n) == (rtype, name))


def _local(name: str) -> Any:
    return next(local[name] for local in parse(DAGSTER / "main.tf")["locals"] if name in local)


def _container(task: str) -> str:
    """The ``container_definitions`` expression of a task definition (jsonencode(...) text)."""
    return str(_resource("aws_ecs_task_definition", task)["container_definitions"])


def fargate_size_is_valid(cpu: int, memory: int) -> bool:
    """The CPU/memory pairs Fargate accepts (for up to 4 vCPU)."""
    allowed = {
        256: [512, 1024, 2048],
        512: list(range(1024, 4097, 1024)),
        1024: list(range(2048, 8193, 1024)),
        2048: list(range(4096, 16385, 1024)),
        4096: list(range(8192, 30721, 1024)),
    }
    return memory in allowed.get(cpu, [])


def test_the_ingestion_worker_is_one_always_on_service_of_its_own_task_definition() -> None:
    service = _resource("aws_ecs_service", "worker")
    daemon = _resource("aws_ecs_service", "daemon")

    assert unquote(service["name"]) == "ingest-worker"
    assert service["task_definition"] == "${aws_ecs_task_definition.worker.arn}"
    assert service["desired_count"] == "${local.worker_count}"
    assert _local("worker_count") == '${var.ingest_model == "worker" ? 1 : 0}'
    assert unquote(blocks(DAGSTER, "variable")["ingest_model"]["default"]) == "worker"
    assert unquote(service["launch_type"]) == "FARGATE"
    # Never two at once (like the daemon), in the daemon's network without a public address.
    assert service["deployment_minimum_healthy_percent"] == 0
    assert service["deployment_maximum_percent"] == 100
    assert service["network_configuration"] == daemon["network_configuration"]
    assert service["network_configuration"][0]["assign_public_ip"] is False
    assert service["deployment_circuit_breaker"] == [{"enable": True, "rollback": True}]


def test_the_worker_runs_tidelake_ingest_follow_from_the_code_location_image() -> None:
    container = _container("worker")

    assert container.startswith("${jsonencode([merge(local.container_base, {")
    assert 'name = "worker"' in container
    assert 'command = ["tidelake", "ingest", "--follow"]' in container
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^tidelake = "tidelake\.cli:main"$', pyproject, re.MULTILINE)


def test_the_worker_has_the_run_tasks_role_and_none_of_the_launchers_permissions() -> None:
    worker = _resource("aws_ecs_task_definition", "worker")
    run = _resource("aws_ecs_task_definition", "run")

    assert worker["task_role_arn"] == run["task_role_arn"] == "${aws_iam_role.run.arn}"
    assert worker["execution_role_arn"] == "${aws_iam_role.execution.arn}"
    assert "launcher" not in str(worker)


def test_the_worker_reaches_dagsters_postgres_and_the_lake_through_the_common_environment() -> None:
    container = _container("worker")
    common_env = _local("common_env")

    assert "environment = [for k in sort(keys(local.common_env))" in container
    for name in ("DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_DB", "LAKE_URI"):
        assert f"{name} = " in common_env, name
    assert "var.kafka_env" in common_env
    secrets = _local("secrets")
    assert '{name = "DAGSTER_PG_PASSWORD", valueFrom = aws_secretsmanager_secret.db.arn}' in secrets
    assert _local("container_base")["secrets"] == "${local.secrets}"


def test_every_dagster_container_runs_the_ingest_model_that_sizes_the_worker_service() -> None:
    common_env = _local("common_env")

    # Last in the merge: extra_env cannot make the sensors and the worker disagree.
    assert common_env.endswith(", var.extra_env, {TIDELAKE_INGEST_MODEL = var.ingest_model})}")
    assert _local("launcher_env").startswith("${merge(local.common_env,")
    for task in ("webserver", "daemon", "run", "worker"):
        assert re.search(
            r"environment = \[for k in sort\(keys\(local\.(common|launcher)_env", _container(task)
        ), task
    condition = blocks(DAGSTER, "variable")["ingest_model"]["validation"][0]["condition"]
    assert all(f'"{model}"' in condition for model in ("worker", "runs", "tick"))


def test_the_worker_logs_to_the_dagster_log_group_under_its_own_stream_prefix() -> None:
    container = _container("worker")

    assert 'logDriver = "awslogs"' in container
    assert "awslogs-group = local.log_group" in container
    assert 'awslogs-stream-prefix = "worker"' in container


def test_the_worker_gets_time_to_commit_its_batches_after_sigterm() -> None:
    from tidelake.settings import IngestSettings

    variable = blocks(DAGSTER, "variable")["worker_stop_timeout_seconds"]

    assert "stopTimeout = var.worker_stop_timeout_seconds" in _container("worker")
    # An init process as PID 1 passes ECS's SIGTERM on to the worker.
    assert _local("container_base")["linuxParameters"] == {"initProcessEnabled": True}
    # Longer than the longest batch's consume phase; Fargate allows at most 120 s.
    assert IngestSettings().max_batch_seconds < variable["default"] <= 120
    assert "<= 120" in variable["validation"][0]["condition"]


def test_worker_sizes_are_described_and_fargate_accepts_them_everywhere() -> None:
    variables = blocks(DAGSTER, "variable")
    assert "TIDELAKE_MAX_BATCH_BYTES" in unquote(variables["worker_memory"]["description"])
    assert fargate_size_is_valid(
        variables["worker_cpu"]["default"], variables["worker_memory"]["default"]
    )
    for env in ROOTS[:-1]:
        call = env_module_calls(env)["dagster"]
        cpu = call.get("worker_cpu", variables["worker_cpu"]["default"])
        memory = call.get("worker_memory", variables["worker_memory"]["default"])
        assert fargate_size_is_valid(cpu, memory), f"{env.name}: worker {cpu}/{memory}"
    assert not fargate_size_is_valid(1024, 1024)
    assert fargate_size_is_valid(2048, 8192)
