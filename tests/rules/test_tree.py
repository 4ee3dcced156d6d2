from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from edge_personalizer.rules.parse_cache import ParseCache
from edge_personalizer.rules.tree import DATA_MARKER, NotAFile, read_at_most, walk

from .test_loader import validate, write


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_link_to_nothing_is_an_error_naming_the_link_and_its_target(
        tmp_path: Path, kind: str) -> None:
    # A rule file or folder linked from a shared mount that went away: its rules were
    # dropped, and validate and the health page said all was well.
    rules, shared = tmp_path / "rules", tmp_path / "shared"
    write(rules, "slots.yaml", "slots: {banner: {}}\n")
    write(shared, "promo.yaml", "rules:\n  - {name: promo, then: {banner: x}}\n")
    link = rules / ("promo.yaml" if kind == "file" else "campaigns")
    target = shared / "promo.yaml" if kind == "file" else shared
    link.symlink_to(target)
    assert walk(rules).errors == ()
    assert validate(rules).returncode == 0
    (tmp_path / "shared").rename(tmp_path / "moved")
    assert [(e.source, e.reason) for e in walk(rules).errors] == [
        (link, f"the link leads to {target}, which does not exist (moved, unmounted?): "
               "restore what it led to, or remove the link")]
    checked = validate(rules)
    assert checked.returncode == 1
    assert checked.stdout.startswith(f"{link}: the link leads to {target}, which does not")


def test_a_servers_data_dir_reached_by_the_rules_is_an_error_naming_the_link(
        tmp_path: Path) -> None:
    rules, data = tmp_path / "rules", tmp_path / "srv" / "data"
    write(rules, "slots.yaml", "slots: {banner: {}}\n")
    write(data, "ep.db", "written every second")
    ParseCache(data, rules, b"key")   # as the server starts: marks its data_dir
    assert (data / DATA_MARKER).is_file()
    (rules / "srv").symlink_to(data.parent)
    tree = walk(rules)
    assert [(e.source, e.reason) for e in tree.errors] == [
        (rules / "srv" / "data", f"a server's data_dir (it holds {DATA_MARKER}), reached "
                                 f"through the folder link {rules / 'srv'}: what the server "
                                 "writes there would count as edits of the rules; remove the "
                                 "link, or move data_dir out of what the rules read")]
    assert [Path(name).name for name, _ in tree.files] == ["slots.yaml"]   # not its files


def test_a_fifo_is_listed_and_refused_unread(tmp_path: Path) -> None:
    # It was left out of the files the rules see, so a rule file that is one went unsaid.
    os.mkfifo(tmp_path / "z.yaml")
    (name, found), = walk(tmp_path).files
    assert name == str(tmp_path / "z.yaml") and stat.S_ISFIFO(found.st_mode)
    with pytest.raises(NotAFile, match=r"^not a regular file \(a FIFO\)$"):
        read_at_most(tmp_path / "z.yaml", 100)   # (opening it waits for no writer)
    assert read_at_most(Path(__file__), 10) is None


def test_a_socket_is_refused_as_one_before_anything_opens_it(tmp_path: Path) -> None:
    # Opened first, a socket said "No such device or address"; a device is never opened
    # (opening some does something).
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "s.yaml"))
        with pytest.raises(NotAFile, match=r"^not a regular file \(a socket\)$"):
            read_at_most(tmp_path / "s.yaml", 100)
    with pytest.raises(NotAFile, match=r"^not a regular file \(a device\)$"):
        read_at_most(Path("/dev/null"), 100)
