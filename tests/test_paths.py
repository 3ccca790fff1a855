"""Paths in messages: `..` resolved, relative to the working folder inside it, links kept."""

import os

from dv365.paths import absolute_path, display_path


def test_dot_dot_is_resolved_and_inside_the_working_folder_is_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    (tmp_path / "configs").mkdir()
    assert display_path("configs/../specs/x.slice") == os.path.join("specs", "x.slice")
    assert display_path(tmp_path / "configs" / ".." / "specs" / "x.slice") == \
        os.path.join("specs", "x.slice")
    assert display_path("./specs/./x.slice") == os.path.join("specs", "x.slice")
    assert display_path(tmp_path) == "."
    assert display_path("configs/..") == "."


def test_outside_the_working_folder_is_absolute(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    monkeypatch.delenv("PWD", raising=False)
    assert display_path("../specs/x.slice") == str(tmp_path / "specs" / "x.slice")
    # a sibling whose name starts like the working folder is not inside it
    assert display_path(tmp_path / "here2" / "x") == str(tmp_path / "here2" / "x")


def test_names_in_angle_brackets_are_not_files():
    assert display_path("<spec>") == "<spec>"


def test_a_link_is_shown_as_typed_unless_dot_dot_leaves_it(tmp_path, monkeypatch):
    real = tmp_path / "elsewhere" / "configs"
    real.mkdir(parents=True)
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "configs").symlink_to(real)
    monkeypatch.chdir(tmp_path / "proj")
    monkeypatch.delenv("PWD", raising=False)
    # through the link, no `..`: the link stays in the name
    assert display_path("configs/train.yaml") == os.path.join("configs", "train.yaml")
    # `configs/..` is the link target's parent for the system: show that file, not proj/x
    assert absolute_path("configs/../x.slice") == tmp_path / "elsewhere" / "x.slice"
    assert display_path("configs/../x.slice") == str(tmp_path / "elsewhere" / "x.slice")


def test_the_shells_spelling_of_a_linked_working_folder_counts_as_inside(tmp_path,
                                                                         monkeypatch):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path / "link")
    monkeypatch.setenv("PWD", str(tmp_path / "link"))
    assert display_path(tmp_path / "link" / "specs" / "x.slice") == \
        os.path.join("specs", "x.slice")
