"""Who may decide on an approval (engine/deciders.py) and how keys are named in settings."""

from __future__ import annotations

import pytest

from orchestrion.engine.deciders import Decider, DecisionRefused, check_decider
from orchestrion.errors import ConfigurationError
from orchestrion.settings import load_settings

CFO = Decider("key:aaaa0001", "operator", "cfo")
CONTROLLER = Decider("key:aaaa0002", "operator", "controller")
ADMIN = Decider("key:aaaa0003", "admin")
OPEN = Decider(None, None)
GROUPS = {"finance": ("controller", "treasurer")}


@pytest.mark.parametrize(
    ("approvers", "decider", "allowed"),
    [
        ([], CFO, True),
        ([], OPEN, True),
        (None, CFO, True),
        (["cfo"], CFO, True),
        (["cfo"], CONTROLLER, False),
        (["cfo", "cro"], CONTROLLER, False),
        (["key:aaaa0002"], CONTROLLER, True),  # a key id
        (["admin"], ADMIN, True),  # a role
        (["admin"], CFO, False),
        (["finance"], CONTROLLER, True),  # a group of key names
        (["finance"], CFO, False),
        (["cfo"], OPEN, False),  # nobody can be told apart on an open server
        (["anonymous"], OPEN, False),
    ],
)
def test_who_may_decide(approvers: object, decider: Decider, allowed: bool) -> None:
    if allowed:
        check_decider("sign", approvers, decider, GROUPS)
    else:
        with pytest.raises(DecisionRefused, match="node 'sign'"):
            check_decider("sign", approvers, decider, GROUPS)


def test_a_decision_records_the_key_name_else_its_id() -> None:
    assert CFO.label == "cfo" and ADMIN.label == "key:aaaa0003"


@pytest.mark.parametrize(
    ("raw", "keys", "names"),
    [
        ("k1:admin,k2:viewer", {"k1": "admin", "k2": "viewer"}, {}),
        ("k1:operator:cfo,k2:admin", {"k1": "operator", "k2": "admin"}, {"k1": "cfo"}),
        ("k:with:colons:viewer", {"k:with:colons": "viewer"}, {}),
        ("k:with:colons:viewer:ana", {"k:with:colons": "viewer"}, {"k:with:colons": "ana"}),
        ("k1:OPERATOR:Cfo.2", {"k1": "operator"}, {"k1": "Cfo.2"}),
    ],
)
def test_api_keys_may_be_named(raw: str, keys: dict[str, str], names: dict[str, str]) -> None:
    settings = load_settings(api_keys=raw)
    assert settings.api_keys == keys
    assert settings.api_key_names == names


@pytest.mark.parametrize(
    "raw",
    ["k1:operator:bad name", "k1:operator:cfo,k2:viewer:cfo", "k1:operator:"],
)
def test_bad_key_names_stop_the_process(raw: str) -> None:
    with pytest.raises(ConfigurationError):
        load_settings(api_keys=raw)


def test_approver_groups() -> None:
    settings = load_settings(approver_groups="finance=cfo+controller, risk=cro")
    assert settings.approver_groups == {"finance": ("cfo", "controller"), "risk": ("cro",)}
    with pytest.raises(ConfigurationError):
        load_settings(approver_groups="finance")


TEAMS = {"cfo": ("alice",), "operator": ("olga",)}
ALICE = Decider("key:aaaa0004", "operator", "alice")
OLGA = Decider("key:aaaa0005", "operator", "olga")


@pytest.mark.parametrize(
    ("approvers", "decider", "allowed"),
    [
        (["cfo"], ALICE, True),  # a member
        (["cfo"], CFO, False),  # a key that bears the team's name, not a member
        (["cfo"], ADMIN, False),  # no role stands in for a team
        (["operator"], CONTROLLER, False),  # a team spelled like a role: its members only
        (["operator"], OLGA, True),
        (["key:aaaa0004"], ALICE, False),  # nor a key id
        (["cfo"], OPEN, False),
    ],
)
def test_a_routing_rule_is_decided_by_a_team_member_only(
    approvers: list[str], decider: Decider, allowed: bool
) -> None:
    if allowed:
        check_decider("routing-1", approvers, decider, TEAMS, members_only=True)
    else:
        with pytest.raises(DecisionRefused, match="node 'routing-1'"):
            check_decider("routing-1", approvers, decider, TEAMS, members_only=True)
