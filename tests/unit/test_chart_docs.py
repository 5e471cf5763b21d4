"""docs/helm-chart.md and the README say what the chart does.

Case matrix:

| claim                                   | checked against                                     |
| --------------------------------------- | --------------------------------------------------- |
| the RBAC table's rows and "granted in"  | ClusterRole and Roles: cluster-wide and namespaced, |
|                                         | each with and without HA                            |
| cluster-wide: every rule, one ClusterRole | = the namespaced Roles + the namespaced ClusterRole |
| every `helm install` in README and page | sets `image.registry` (no published image exists)   |
| the README starts with its two commands | `make demo`, `make test`                            |
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import chart

PAGE = chart.ROOT / "docs" / "helm-chart.md"
README = chart.ROOT / "README.md"
HEADER = ["API group", "resource", "verbs", "granted in", "why"]
HA = ", with `ha.enabled`"

# (API group, resource, verbs, where)
Row = tuple[str, str, frozenset[str], str]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _unquote(text: str) -> str:
    return text.strip().strip("`")


def documented_rules() -> set[Row]:
    """The rows of the table under `## RBAC`."""
    section = PAGE.read_text().split("\n## RBAC\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert _cells(lines[0]) == HEADER, "the RBAC table's header changed; update this test with it"
    rows = set()
    for line in lines[2:]:
        group, resource, verbs, where, _why = _cells(line)
        row = (
            "" if group == "core" else _unquote(group),
            _unquote(resource),
            frozenset(v.strip() for v in verbs.split(",")),
            where,
        )
        assert row not in rows, f"row listed twice: {line}"
        rows.add(row)
    return rows


def _rules(docs: list[chart.Doc], kind: str) -> dict[tuple[str, str], frozenset[str]]:
    """(group, resource) -> verbs over every object of `kind` (rules listing several are split)."""
    out: dict[tuple[str, str], frozenset[str]] = {}
    for role in chart.of_kind(docs, kind):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    out[group, resource] = out.get((group, resource), frozenset()) | set(rule["verbs"])
    return out


def _rows(rules: dict[tuple[str, str], frozenset[str]], where: str) -> set[Row]:
    return {(group, resource, verbs, where) for (group, resource), verbs in rules.items()}


def _added(
    more: dict[tuple[str, str], frozenset[str]], base: dict[tuple[str, str], frozenset[str]]
) -> dict[tuple[str, str], frozenset[str]]:
    return {key: verbs for key, verbs in more.items() if base.get(key) != verbs}


def rendered_rules() -> set[Row]:
    namespaced = chart.render({"rbac": {"clusterWide": False}})
    namespaced_ha = chart.render({"rbac": {"clusterWide": False}, "ha": {"enabled": True}})
    cluster_wide = chart.render({})
    cluster_wide_ha = chart.render({"ha": {"enabled": True}})
    in_roles, in_cluster_role = _rules(namespaced, "Role"), _rules(namespaced, "ClusterRole")
    # "Served namespaces": Roles when namespaced, the one ClusterRole when cluster-wide.
    assert _rules(cluster_wide, "ClusterRole") == in_roles | in_cluster_role
    assert _rules(cluster_wide, "Role") == {}
    # HA adds one Role, in the release namespace (the Lease), and nothing cluster-wide.
    assert _rules(namespaced_ha, "ClusterRole") == in_cluster_role
    assert _rules(cluster_wide_ha, "ClusterRole") == _rules(cluster_wide, "ClusterRole")
    lease = _rules(cluster_wide_ha, "Role")
    assert _added(_rules(namespaced_ha, "Role"), in_roles) == lease
    assert {r["metadata"]["namespace"] for r in chart.of_kind(cluster_wide_ha, "Role")} == {chart.NAMESPACE}
    return (
        _rows(in_roles, "served namespaces")
        | _rows(in_cluster_role, "cluster")
        | _rows(lease, "release namespace" + HA)
    )


def test_rbac_table_is_what_the_chart_grants() -> None:
    documented, rendered = documented_rules(), rendered_rules()
    assert sorted(documented - rendered, key=str) == [], "documented but not granted"
    assert sorted(rendered - documented, key=str) == [], "granted but not documented"


def test_rbac_table_parser_sees_a_wrong_verb() -> None:
    """The comparison above must be able to fail: one verb more in a row is caught."""
    documented = documented_rules()
    secrets = next(row for row in documented if row[1] == "secrets")
    tampered = (documented - {secrets}) | {(*secrets[:2], secrets[2] | {"list"}, secrets[3])}
    assert tampered != rendered_rules()


def test_page_says_plainly_what_the_cluster_wide_grant_allows() -> None:
    section = PAGE.read_text().split("### What the cluster-wide grant allows", 1)[1].split("\n## ", 1)[0]
    for claim in ("read any Secret in any namespace", "patch any Deployment", "patch any pod anywhere"):
        assert claim in section
    assert "rbac:\n  clusterWide: false" in PAGE.read_text()


def _shell_commands(path: Path) -> list[str]:
    """Commands of the ```sh blocks, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", path.read_text(), flags=re.DOTALL)
    return [command.strip() for block in blocks for command in block.replace("\\\n", " ").splitlines()]


@pytest.mark.parametrize("path", [README, PAGE], ids=lambda p: p.name)
def test_every_documented_install_sets_the_image_registry(path: Path) -> None:
    installs = [c for c in _shell_commands(path) if re.match(r"helm (install|upgrade --install) ", c)]
    assert installs, f"no helm install in {path.name}"
    assert [c for c in installs if "image.registry=" not in c] == []
    # ... and the same registry `make images` pushed to just before.
    pushes = [c for c in _shell_commands(path) if c.startswith("make images REGISTRY=")]
    registries = {c.split("REGISTRY=", 1)[1].split()[0] for c in pushes}
    assert {c.split("image.registry=", 1)[1].split()[0] for c in installs} <= registries


def test_readme_starts_with_its_two_commands() -> None:
    first_block = _shell_commands(README)[:2]
    assert [c.split("#")[0].strip() for c in first_block] == ["make demo", "make test"]
