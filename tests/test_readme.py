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

TEMPLATE = Path(__file__).resolve().parent.parent
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
    """One baked repo per variant, with a port other than the default so a hard-coded 9090 shows, and its
    documentation as one text: the README, then every docs/ page (sections are looked up across both)."""
    from cookiecutter.main import cookiecutter

    out = tmp_path_factory.mktemp(f"readme-{request.param}")
    template = Path(__file__).resolve().parent.parent
    path = cookiecutter(str(template), no_input=True, output_dir=str(out),
                        extra_context={"model_type": request.param, "port": "9321", "project_name": "Docs Check"})
    repo = Path(path)
    return repo, "\n".join(pages(repo).values())


def pages(repo: Path) -> dict[str, str]:
    """The README and every docs/ page of a baked repo, by path relative to the repo."""
    found = {"README.md": (repo / "README.md").read_text(encoding="utf-8")}
    for page in sorted((repo / "docs").glob("*.md")):
        found[f"docs/{page.name}"] = page.read_text(encoding="utf-8")
    return found


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
    repo, _ = baked
    for name, text in pages(repo).items():
        left = [line for line in text.splitlines() if JINJA_LEFT.search(line)]
        assert left == [], f"unrendered Jinja in {name}: {left}"
        # the settings table shows the code's default (9090); every other page shows the baked port
        assert name == "docs/settings.md" or "9090" not in text, f"{name} shows 9090, not the baked port"
    assert "9321" in pages(repo)["README.md"], "the README must show the port the repo was baked with"


def test_the_readme_is_a_short_front_page_in_a_newcomers_order(baked):
    """What it is, run it, edit the model, test it, connect Label Studio, Docker, then where the rest is."""
    repo, _ = baked
    readme = pages(repo)["README.md"]
    assert readme.count("\n") <= 200, "the README is a newcomer's page: move reference text to docs/"
    top = [m.group(2) for m in HEADING.finditer(FENCE.sub("", readme)) if len(m.group(1)) == 2]
    assert top[:5] == ["Run it", "Edit the model", "Test it", "Connect Label Studio", "Docker"], top
    assert top[-1] == "Where the rest is", top
    linked = {target.split("#")[0] for target in LINK.findall(section(readme, "Where the rest is"))}
    assert linked == {name for name in pages(repo) if name.startswith("docs/")}, "every docs/ page is linked"


def test_every_internal_link_points_at_a_heading(baked):
    """Links between the README and docs/ pages, and within each, reach a file and a heading there."""
    repo, _ = baked
    docs = pages(repo)
    for name, page in docs.items():
        for target in LINK.findall(FENCE.sub("", page)):
            if "://" in target or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            file = (repo / name).parent / path if path else repo / name
            assert file.exists(), f"{name} links to {target}, which this repo does not have"
            key = file.resolve().relative_to(repo.resolve()).as_posix()
            if anchor:
                assert key in docs, f"{name} links to an anchor of {key}, which is not a documentation page"
                assert anchor in anchors(docs[key]), f"{name}: link {target} points at no heading of {key}"


def test_every_section_reference_names_a_section_in_that_direction(baked):
    repo, _ = baked
    for name, page in pages(repo).items():
        text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), page)
        slugs = anchors(page)
        assert not BARE_REF.search(re.sub(SECTION_REF, "", text)), f"{name}: a 'see above/below' naming no section"
        for match in SECTION_REF.finditer(text):
            title, where = (match.group(1) or match.group(2)), match.group(3).lower()
            slug = github_slug(title)
            assert slug in slugs, f"{name}: '{match.group(0)}' names no section of this page"
            line = text.count("\n", 0, match.start()) + 1
            assert (slugs[slug] < line) == (where == "above"), f"{name}: '{match.group(0)}' is not {where}"


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


DECLARED_PROBE = """
import json
from lsbackend.settings import Settings
print(json.dumps({"fields": {d.env: name for name, d, _ in Settings.declared()}, "table": Settings.table()}))
"""
#: Read by the code but not settings of ours: Python's own search path, extended for the training child.
NOT_SETTINGS = {"PYTHONPATH"}
ENV_READ = re.compile(r"""(?:environ\.get|getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']""")


def declared_settings(repo: Path) -> dict:
    """The baked repo's one declaration: ``fields`` (variable -> Settings field) and the ``table`` it prints."""
    proc = run([sys.executable, "-c", DECLARED_PROBE], cwd=repo)
    return json.loads(proc.stdout.splitlines()[-1])


def settings_read_by_code(repo: Path) -> set[str]:
    """Every declared variable whose field this repo's code uses, the variables read outside the declaration too."""
    code = "\n".join(path.read_text(encoding="utf-8") for path in [*repo.joinpath("lsbackend").glob("*.py"),
                                                                    repo / "model.py"]
                      if path.name != "settings.py")
    used = {env for env, name in declared_settings(repo)["fields"].items() if re.search(rf"\.{name}\b", code)}
    return used | (set(ENV_READ.findall(code)) - NOT_SETTINGS)


def settings_table(repo: Path) -> set[str]:
    """The variables docs/settings.md documents (first column of each row)."""
    page = (repo / "docs" / "settings.md").read_text(encoding="utf-8")
    return {name for row in page.splitlines() if row.startswith("| `") for name in CODE_SPAN.findall(row.split("|")[1])}


def test_the_settings_page_is_the_one_declaration(baked):
    """docs/settings.md shows exactly what ``python -m lsbackend settings`` prints from ``lsbackend/settings.py``."""
    repo, readme = baked
    page = (repo / "docs" / "settings.md").read_text(encoding="utf-8")
    start = page.index("| variable |")
    table = page[start:page.index("\n\n", start) + 1]
    assert table == declared_settings(repo)["table"], "docs/settings.md differs from `python -m lsbackend settings`"
    assert "docs/settings.md" in section(readme, "Settings")
    shown = commands(readme, "python -m lsbackend")
    assert ["settings"] in shown, "the README's Settings section should show `python -m lsbackend settings`"


def test_every_variable_the_code_reads_is_declared_and_every_declared_one_is_used():
    """Across the runtime and every variant's model, as the template ships them: no variable read
    behind the declaration's back, and no declared setting that nothing uses."""
    slug = TEMPLATE / "{{cookiecutter.project_slug}}"
    sources = [*slug.joinpath("lsbackend").glob("*.py"), *slug.joinpath("_variants").glob("*/model.py")]
    code = "\n".join(path.read_text(encoding="utf-8") for path in sources if path.name != "settings.py")
    proc = run([sys.executable, "-c", DECLARED_PROBE], cwd=slug)
    fields = json.loads(proc.stdout.splitlines()[-1])["fields"]
    undeclared = set(ENV_READ.findall(code)) - NOT_SETTINGS - set(fields)
    assert undeclared == set(), f"code reads {undeclared} from the environment, not through Settings"
    unused = {env for env, name in fields.items() if not re.search(rf"\.{name}\b", code)}
    assert unused == set(), f"settings declared but used by no code: {unused}"


def test_basic_auth_flow(baked):
    repo, readme = baked
    text = section(readme, "Basic auth")
    assert {"BASIC_AUTH_USER", "BASIC_AUTH_PASS"} <= settings_table(repo) & settings_read_by_code(repo)
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
