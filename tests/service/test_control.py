"""Load and unload requests shared through the control folder, as two workers share them."""

from __future__ import annotations

from pathlib import Path

from service.control import STATE_FILE, Control, ControlState


def test_two_workers_see_each_others_requests(tmp_path: Path) -> None:
    first, second = Control(tmp_path), Control(tmp_path)
    assert second.read() == ControlState()
    first.request_unload("a")
    first.request_unload("b")
    assert second.read().unloaded == {"a", "b"}
    second.request_load("a")
    second.request_load("a")
    state = first.read()
    assert state.unloaded == {"b"} and state.loads == {"a": 2}


def test_without_a_folder_the_state_is_this_process_only(tmp_path: Path) -> None:
    control = Control(None)
    control.request_unload("a")
    assert control.read().unloaded == {"a"} and Control(None).read() == ControlState()
    assert not list(tmp_path.iterdir())


def test_a_damaged_file_reads_as_no_requests(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text('{"unloaded": [')
    assert Control(tmp_path).read() == ControlState()
    assert Control(tmp_path).request_unload("a").unloaded == {"a"}  # and is replaced
