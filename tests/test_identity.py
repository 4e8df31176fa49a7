"""The guard rails every identity passes through, and the names derived from a hub username."""

from __future__ import annotations

import pytest

from nfsuidspawner import Identity, NFSUIDError
from nfsuidspawner.identity import IMAGE_ACCOUNT_NAMES, check_ids, home_dir, unix_name

TEMPLATE = "home/{unescaped_username}"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("alice", "home/alice"),
        ("qiang.guo03", "home/qiang.guo03"),
        ("Alice.Smith", "home/Alice.Smith"),
        ("o'neil", "home/o'neil"),
    ],
)
def test_home_dir_keeps_the_name_as_it_is(name: str, expected: str) -> None:
    assert home_dir(TEMPLATE, name) == expected


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a/b", "contains '/'"),
        ("..", "contains '..'"),
        ("a..b", "contains '..'"),
        ("al\x00ice", "contains a control character"),
        ("al\nice", "contains a control character"),
        ("-rf", "starts with '-'"),
        ("", "is empty"),
    ],
)
def test_home_dir_refuses_names_that_could_leave_the_directory(name: str, problem: str) -> None:
    with pytest.raises(NFSUIDError, match=f"the name {problem}"):
        home_dir(TEMPLATE, name)


@pytest.mark.parametrize("template", ["/home/{unescaped_username}", "../{unescaped_username}"])
def test_home_dir_template_must_stay_inside_the_share(template: str) -> None:
    with pytest.raises(NFSUIDError, match="which is not inside the share"):
        home_dir(template, "alice")


def test_home_dir_template_with_an_unknown_field_names_the_fix() -> None:
    with pytest.raises(NFSUIDError, match=r"uses a field other than \{unescaped_username\}"):
        home_dir("home/{username}", "alice")


@pytest.mark.parametrize(
    "template",
    [
        "",
        "home",
        "home/{unescaped_username[0]}",
        "home/{unescaped_username:.3}",
        "{unescaped_username!s}",
        "home/x{unescaped_username}",
        "home/{unescaped_username}-lab",
        "{unescaped_username}/{unescaped_username}",
    ],
    ids=["empty", "no-name", "index", "format-spec", "conversion", "prefix", "suffix", "twice"],
)
def test_a_template_that_merges_users_is_refused(template: str) -> None:
    """Each of these would give two users one directory (alice and alex share "a", "ali")."""
    with pytest.raises(NFSUIDError, match="does not give each user a directory of their own"):
        home_dir(template, "alice")


def test_a_template_through_the_users_own_directory_is_refused() -> None:
    """home/alice/jupyter: alice could swap 'jupyter' for a link to bob's directory between
    the check and the mount."""
    with pytest.raises(NFSUIDError, match="as a whole path component"):
        home_dir("home/{unescaped_username}/jupyter", "alice")


@pytest.mark.parametrize("template", ["{unescaped_username}", "a/b/{unescaped_username}"])
def test_the_name_as_the_last_whole_component_is_accepted(template: str) -> None:
    assert home_dir(template, "alice").endswith("alice")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("alice", "alice"),
        ("Alice.Smith", "alice.smith"),
        ("o'neil", "o_neil"),
        ("3po", "u3po"),
        ("x" * 40, "x" * 32),
    ],
)
def test_unix_name_is_what_useradd_accepts(name: str, expected: str) -> None:
    assert unix_name(name, IMAGE_ACCOUNT_NAMES) == expected


@pytest.mark.parametrize("name", ["sudo", "Users", "root", "adm"])
def test_unix_name_refuses_an_account_the_image_has(name: str) -> None:
    with pytest.raises(NFSUIDError, match="is one the image already has"):
        unix_name(name, IMAGE_ACCOUNT_NAMES)


@pytest.mark.parametrize(
    ("uid", "gid", "problem"),
    [
        (0, 3001, r"is owned by uid 0 \(root\)"),
        (65534, 3001, r"is owned by uid 65534 \(nobody\)"),
        (999, 3001, "is owned by uid 999, below min_uid 1000"),
        (2001, 0, r"has group gid 0 \(root\)"),
        (2001, 65534, r"has group gid 65534 \(nogroup\)"),
        (2001, 27, "has group gid 27, below min_gid 1000"),
    ],
)
def test_check_ids_refuses(uid: int, gid: int, problem: str) -> None:
    with pytest.raises(NFSUIDError, match=f"^nfsuid: user alice: /p {problem}. Fix: "):
        check_ids("alice", "/p", uid, gid, 1000, 1000)


def test_check_ids_accepts_a_real_user() -> None:
    assert check_ids("alice", "/p", 2001, 3001, 1000, 1000) == Identity(2001, 3001)


def test_min_gid_can_be_lowered_for_the_users_group() -> None:
    assert check_ids("alice", "/p", 2001, 100, 1000, 100) == Identity(2001, 100)
