"""The terminal's saved device choices: one JSON file in its state directory."""
from __future__ import annotations

import pytest

from terminal.settings import (SCANNERS, DeviceSettings, SettingsError, location_label, next_choice,
                               open_scanner)


def test_choices_are_saved_whole_and_read_back(tmp_path):
    assert DeviceSettings.load(tmp_path, location="gpsd") == DeviceSettings(location="gpsd")  # nothing saved yet
    path = DeviceSettings("Virtual PCD 00 00", "demo", "nmea:/dev/ttyUSB0@4800").save(tmp_path / "state")
    assert path.name == "settings.json" and not list(path.parent.glob("*.tmp"))
    assert DeviceSettings.load(tmp_path / "state") == DeviceSettings("Virtual PCD 00 00", "demo",
                                                                     "nmea:/dev/ttyUSB0@4800")


@pytest.mark.parametrize("text, message", [
    ("{not json", "delete it"),
    ('{"scanner": "laser"}', "scanner must be one of"),
    ('{"location": "glonass:1"}', "location must be empty or start with"),
])
def test_a_bad_file_is_refused_with_what_to_do(tmp_path, text, message):
    DeviceSettings.path(tmp_path).write_text(text)
    with pytest.raises(SettingsError, match=message):
        DeviceSettings.load(tmp_path)


def test_one_key_cycles_through_the_choices():
    assert next_choice(SCANNERS, "none") == "demo" and next_choice(SCANNERS, SCANNERS[-1]) == "none"
    assert next_choice(["", "gpsd"], "file:/x") == ""  # a choice not offered starts the cycle again


def test_scanners_open_by_name_and_the_demo_one_only_in_the_demo():
    assert open_scanner("none") is None
    demo = object()
    assert open_scanner("demo", demo) is demo
    with pytest.raises(SettingsError, match="only in `pos demo`"):
        open_scanner("demo")


def test_location_labels_say_what_the_source_is():
    assert location_label("").startswith("none")
    assert location_label("fixed:31.23,121.47,10") == "fixed site 31.23,121.47,10"
    assert location_label("gpsd") == "gpsd on localhost"
