"""Each baked README, read as a user would: every flow it shows must work in the repo it came with.

The commands in the README are parsed and checked against the files that run
them (Makefile targets, the CLI's own argument parser, the Dockerfile, the
compose file, the settings the code reads), so a renamed target, option or
service breaks this test, not a user's first hour.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from conftest import MODEL_TYPES, run

FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$", re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+)\)")
# "see X above/below", with X plain text or a link; an X-less "see above" names nothing
SECTION_REF = re.compile(r"\bsee (?:the )?(?:\[([^\]]+)\]\([^)]*\)|([A-Za-z][\w' -]{0,60}?))(?: section)? (above|below)\b",
                         re.IGNORECASE)
BARE_REF = re.compile(r"\(see (above|below)\)|\bsee (above|below)\b", re.IGNORECASE)
# Jinja left behind; `{{.State.Health.Status}}` is docker's own Go template and stays
JINJA_LEFT = re.compile(r"\{\{(?!\.)|\{%|%\}|\{#|#\}|(?<![.\w])cookiecutter\.(?!json\b)")


@pytest.fixture(scope="module", params=MODEL_TYPES)
def baked(request, tmp_path_factory):
    """One baked repo per variant, with a port other than the default so a hard-coded 9090 shows."""
    from cookiecutter.main import cookiecutter

    out = tmp_path_factory.mktemp(f"readme-{request.param}")
    template = Path(__file__).resolve().parent.parent
    path = cookiecutter(str(template), no_input=True, output_dir=str(out),
                        extra_context={"model_type": request.param, "port": "9321", "project_name": "Docs Check"})
    repo = Path(path)
    return repo, (repo / "README.md").read_text(encoding="utf-8")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lowercase, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters, digits and underscore, as GitHub does
    return text.replace(" ", "-")


def anchors(readme: str) -> dict[str, int]:
    """Anchor -> line number of every heading, numbering repeats as GitHub does (-1, -2 ...)."""
    found: dict[str, int] = {}
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), readme)  # '#' in code is no heading
    for match in HEADING.finditer(text):
        slug = base = github_slug(match.group(2))
        n = 0
        while slug in found:
            n += 1
            slug = f"{base}-{n}"
        found[slug] = text.count("\n", 0, match.start()) + 1
    return found


def section(readme: str, title: str) -> str:
    """The text under a heading, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}\n", readme, re.MULTILINE)
    assert match, f"README has no section {title!r}"
    level = len(match.group(1))
    rest = readme[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def code_lines(text: str) -> list[str]:
    """Every shell line shown: fenced blocks (backslash continuations joined, comments cut) and code spans."""
    lines = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    lines += CODE_SPAN.findall(FENCE.sub("", text))
    return lines


def commands(text: str, program: str) -> list[list[str]]:
    """Argument lists of every ``program ...`` command shown in ``text`` (also inside ``a && b``)."""
    found = []
    for line in code_lines(text):
        for part in re.split(r"&&|\|\||;|\|", line):
            try:
                words = shlex.split(part)
            except ValueError:
                continue
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
                words = words[1:]
            if words[: len(program.split())] == program.split():
                found.append(words[len(program.split()):])
    return found


def makefile_targets(repo: Path) -> dict[str, str]:
    """Target -> recipe of the Makefile."""
    targets, current = {}, None
    for line in (repo / "Makefile").read_text(encoding="utf-8").splitlines():
        if line.startswith("\t") and current:
            targets[current] += line.strip() + "\n"
            continue
        match = re.match(r"^([\w./$()-]+(?: [\w./$()-]+)*):(?!=)", line)
        current = None
        if match and not line.startswith(".PHONY"):
            for name in match.group(1).split():
                targets[name] = ""
            current = match.group(1).split()[0]
    return targets


# ---------------------------------------------------------------- rendering, links and references


def test_no_jinja_is_left_unrendered(baked):
    _, readme = baked
    left = [line for line in readme.splitlines() if JINJA_LEFT.search(line)]
    assert left == [], f"unrendered Jinja: {left}"
    assert "9321" in readme and "9090" not in readme, "the README must show the port the repo was baked with"


def test_every_internal_link_points_at_a_heading(baked):
    repo, readme = baked
    slugs = anchors(readme)
    text = FENCE.sub("", readme)
    for target in LINK.findall(text):
        if target.startswith("#"):
            assert target[1:] in slugs, f"link {target} points nowhere; headings: {sorted(slugs)}"
        elif "://" not in target:
            assert (repo / target.split("#")[0]).exists(), f"link to {target}, which this repo does not have"


def test_every_section_reference_names_a_section_in_that_direction(baked):
    _, readme = baked
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), readme)
    slugs = anchors(readme)
    assert not BARE_REF.search(re.sub(SECTION_REF, "", text)), "a 'see above/below' that names no section"
    for match in SECTION_REF.finditer(text):
        name, where = (match.group(1) or match.group(2)), match.group(3).lower()
        slug = github_slug(name)
        assert slug in slugs, f"'{match.group(0)}' names no section of this README"
        line = text.count("\n", 0, match.start()) + 1
        assert (slugs[slug] < line) == (where == "above"), f"'{match.group(0)}': the section is not {where}"


# ---------------------------------------------------------------- the user flows


def test_run_and_test_flows_use_make_targets_that_exist(baked):
    repo, readme = baked
    targets = makefile_targets(repo)
    shown = {words[0] for words in commands(readme, "make") if words}
    assert {"run", "test"} <= shown, f"the README must show `make run` and `make test`, shows {shown}"
    assert shown <= set(targets), f"README shows make targets the Makefile lacks: {shown - set(targets)}"
    assert "lsbackend start" in targets["run"], "make run must start the production server"
    assert "pytest" in targets["test"] and "ruff" in targets["test"], "make test must run the tests and ruff"
    assert "make test" in section(readme, "Test it")
    assert "make run" in section(readme, "Run it")


PARSE_PROBE = r"""
import json, sys
import lsbackend.cli as cli
ran = []
def stub(original):
    def stand_in(args):
        ran.append(original.__name__)
        return 0
    stand_in.__doc__ = original.__doc__  # the CLI builds its help from these
    return stand_in
for name in [n for n in dir(cli) if n.startswith("cmd_")]:
    setattr(cli, name, stub(getattr(cli, name)))
failed = []
for argv in json.loads(sys.argv[1]):
    try:
        cli.main(argv)
    except SystemExit as exc:
        failed.append([argv, str(exc.code)])
print(json.dumps({"failed": failed, "ran": ran}))
"""


def test_every_cli_command_shown_parses_with_the_real_cli(baked):
    """Each ``python -m lsbackend ...`` line goes through the CLI's own parser (commands stubbed out)."""
    repo, readme = baked
    shown = commands(readme, "python -m lsbackend") + commands(readme, ".venv/bin/python -m lsbackend")
    assert {argv[0] for argv in shown} >= {"start", "check", "train", "predict"}, shown
    proc = run([sys.executable, "-c", PARSE_PROBE, json.dumps(shown)], cwd=repo)
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["failed"] == [], f"README shows commands the CLI refuses: {result['failed']}\n{proc.stderr}"
    assert len(result["ran"]) == len(shown)


def test_docker_build_and_run_match_the_dockerfile(baked):
    repo, readme = baked
    docker = section(readme, "Docker")
    slug, port = repo.name, "9321"
    dockerfile = (repo / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(rf"^EXPOSE {port}$", dockerfile, re.MULTILINE) and 'VOLUME ["/data/models"]' in dockerfile
    assert "HEALTHCHECK" in dockerfile
    builds = commands(docker, "docker build")
    assert builds and builds[0][-1] == "." and builds[0][builds[0].index("-t") + 1] == slug, builds
    runs = commands(docker, "docker run")
    assert runs, "the Docker section shows no docker run"
    argv = runs[0]
    assert argv[-1] == slug, f"docker run starts {argv[-1]}, the build tags {slug}"
    assert argv[argv.index("-p") + 1] == f"{port}:{port}"
    assert argv[argv.index("-v") + 1].endswith(":/data/models")
    inspect = commands(docker, "docker inspect")
    assert inspect and "Health" in " ".join(inspect[0]) and inspect[0][-1] == slug


def test_compose_commands_match_the_compose_file(baked):
    repo, readme = baked
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    text = section(readme, "Compose")
    shown = commands(text, "docker compose")
    assert any(argv[:1] == ["up"] for argv in shown), "no `docker compose up` shown"
    profiles = {p for s in services.values() for p in s.get("profiles", [])}
    for argv in shown:
        if "--profile" in argv:
            assert argv[argv.index("--profile") + 1] in profiles, argv
    passed = re.search(r"Compose passes (.*?) from your shell", text, re.DOTALL)
    assert passed, "the Compose section must say which variables Compose passes"
    backend = next(s for s in services.values() if "build" in s)
    for name in CODE_SPAN.findall(passed.group(1)):
        assert name in backend["environment"], f"README says Compose passes {name}; docker-compose.yml does not"


def test_url_table_names_real_services_and_ports(baked):
    repo, readme = baked
    compose = yaml.safe_load((repo / "docker-compose.yml").read_text(encoding="utf-8"))
    table = section(readme, "Which URL goes where")
    urls = set(re.findall(r"http://([\w.-]+):(\d+)", table))
    assert ("localhost", "9321") in urls and ("host.docker.internal", "8080") in urls
    # A service is reached by its name or a network alias (the backend's has a dot: Label Studio needs one).
    names = {
        alias: name
        for name, service in compose["services"].items()
        for alias in [name, *(a for net in (service.get("networks") or {}).values() for a in net.get("aliases", []))]
    }
    for host, port in urls - {("localhost", "9321"), ("localhost", "8080"), ("host.docker.internal", "8080")}:
        assert host in names, f"the URL table names {host}, not a compose service or alias"
        published = " ".join(compose["services"][names[host]].get("ports", []))
        assert f":{port}" in published, f"{host} does not listen on {port} in docker-compose.yml"


def test_what_goes_into_the_image_matches_dockerignore(baked):
    repo, readme = baked
    text = section(readme, "What goes into the image")
    allowed = {line[1:].rstrip("/") for line in (repo / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    named = re.search(r"lets only (.*?) into", text, re.DOTALL)
    assert named, "the section must list what .dockerignore lets in"
    assert {n.rstrip("/") for n in CODE_SPAN.findall(named.group(1))} == allowed


def test_connect_label_studio_flow(baked):
    repo, readme = baked
    text = section(readme, "Connect Label Studio")
    assert "http://localhost:9321" in text and "Connect Model" in text
    starts = commands(text, "label-studio start")
    assert starts is not None and "ML_BLOCK_LOCAL_IP=false USE_DEFAULT_BANNED_SUBNETS=false" in text
    assert "SSRF_PROTECTION_ENABLED=false" not in text, "Label Studio's SSRF protection stays on, narrowed"
    from integration.label_studio import ssrf_settings

    shown = re.search(r"USER_ADDITIONAL_BANNED_SUBNETS=(\S+)", text)
    assert shown and shown.group(1) == ssrf_settings()["USER_ADDITIONAL_BANNED_SUBNETS"], (
        "the README's banned subnets differ from what the integration test runs Label Studio with"
    )
    assert (repo / "label_config.xml").is_file()


ENV_READ = re.compile(r"""(?:environ\.get|getenv|env|_number|_env\w*)\(\s*["']([A-Z][A-Z0-9_]+)["']""")
SETTINGS_FIELD = re.compile(r"""^\s*(\w+)=(.*)$""", re.MULTILINE)
QUOTED_NAME = re.compile(r"""["']([A-Z][A-Z0-9_]+)["']""")  # a field may read several names (an alias)
#: Read by the code but not settings of ours: Python's own search path, extended for the training child.
NOT_SETTINGS = {"PYTHONPATH"}


def settings_read_by_code(repo: Path) -> set[str]:
    """Every environment variable this repo's code reads and uses.

    ``Settings.from_env`` reads every variable; one counts only when some code
    of this repo uses its field (the image settings have no user in a text repo).
    """
    code = {path: path.read_text(encoding="utf-8") for path in [*repo.joinpath("lsbackend").glob("*.py"),
                                                                repo / "model.py"]}
    settings_py = repo / "lsbackend" / "settings.py"
    others = "\n".join(text for path, text in code.items() if path != settings_py)
    names = set(ENV_READ.findall(others)) - NOT_SETTINGS
    for field, line in SETTINGS_FIELD.findall(code[settings_py]):
        if re.search(rf"\.{field}\b", others) or re.search(rf"self\.{field}\b", code[settings_py]):
            names.update(QUOTED_NAME.findall(line))
    return names


def settings_table(readme: str) -> set[str]:
    """The variables the README's Settings table documents (first column of each row)."""
    return {name for row in section(readme, "Settings").splitlines() if row.startswith("| `")
            for name in CODE_SPAN.findall(row.split("|")[1])}


def test_settings_table_lists_exactly_what_the_code_reads(baked):
    repo, readme = baked
    documented = settings_table(readme)
    read = settings_read_by_code(repo)
    assert read - documented == set(), f"settings the code reads but the README does not list: {read - documented}"
    assert documented - read == set(), f"settings the README lists but no code reads: {documented - read}"


def test_basic_auth_flow(baked):
    repo, readme = baked
    text = section(readme, "Basic auth")
    assert {"BASIC_AUTH_USER", "BASIC_AUTH_PASS"} <= settings_read_by_code(repo)
    assert "`BASIC_AUTH_USER`" in text and "`BASIC_AUTH_PASS`" in text
    assert "Authorization: Basic" in text and "/webhook" in text, "the webhook's header must be explained"


EDIT_PROBE = r"""
import json, sys
from pathlib import Path
from lsbackend.service import load_model_class
model = load_model_class("model")(Path("label_config.xml").read_text(encoding="utf-8"))
print(json.dumps([name for name in json.loads(sys.argv[1]) if not hasattr(model, name)]))
"""


def test_edit_the_model_names_only_what_the_model_has(baked):
    repo, readme = baked
    text = section(readme, "Edit the model")
    names = sorted(set(re.findall(r"self\.(\w+)", text)) | set(re.findall(r"^- `(\w+)\(", text, re.MULTILINE)))
    assert {"predict", "fit", "setup", "prediction"} <= set(names), names
    proc = run([sys.executable, "-c", EDIT_PROBE, json.dumps(names)], cwd=repo)
    assert json.loads(proc.stdout.splitlines()[-1]) == [], "README names model attributes that do not exist"
    assert "model.py" in text and (repo / "model.py").is_file()


def test_layout_lists_files_the_repo_has(baked):
    repo, readme = baked
    for name in re.findall(r"^- `([^`]+)`", section(readme, "Layout"), re.MULTILINE):
        assert (repo / name).exists(), f"Layout lists {name}, which the repo does not have"


def test_update_flow_shows_the_commands_the_update_test_runs(baked):
    repo, readme = baked
    text = section(readme, "Update from the template")
    installs = [argv for argv in commands(text, "pip install") if any(a.startswith("cruft==") for a in argv)]
    pinned = {line.strip() for line in (Path(__file__).resolve().parent.parent / "requirements.txt").read_text()
              .splitlines() if line.startswith("cruft==")}
    assert installs and {a for a in installs[0] if a.startswith("cruft==")} == pinned, "pip install cruft== as pinned"
    shown = commands(text, "cruft")
    assert ["update", "-y"] in [argv[:2] for argv in shown], "the README must show `cruft update -y`"
    cruft = Path(sys.executable).with_name("cruft")
    for argv in shown:  # each subcommand and option shown exists in the pinned cruft
        helptext = run([str(cruft), argv[0], "--help"], cwd=repo).stdout
        for option in (a for a in argv[1:] if a.startswith("-")):
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", helptext), f"cruft {argv[0]} has no {option}"
    assert ".rej" in text and "<<<<<<<" in text, "the README must say what happens to a conflicting edit"
    state = json.loads((repo / ".cruft.json").read_text(encoding="utf-8"))
    assert state["template"] and state["commit"] is not None and "FILL-IN" in text
