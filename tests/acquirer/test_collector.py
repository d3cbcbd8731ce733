"""The collector's setting (acquirer/collector.py): only the youngest generation's threshold
rises, set by the host when it starts."""
import gc

import pytest

from acquirer.collector import YOUNG_GENERATION, collect_less_often

from .conftest import start_host


@pytest.fixture
def thresholds():
    kept = gc.get_threshold()
    yield
    gc.set_threshold(*kept)


def test_raises_the_youngest_generation_only(thresholds):
    gc.set_threshold(700, 10, 10)
    collect_less_often()
    assert gc.get_threshold() == (YOUNG_GENERATION, 10, 10)


@pytest.mark.parametrize("young", [0, YOUNG_GENERATION * 2])
def test_keeps_a_disabled_or_higher_setting(thresholds, young):
    gc.set_threshold(young, 7, 9)
    collect_less_often()
    assert gc.get_threshold() == (young, 7, 9)


def test_a_started_host_sets_it(thresholds, tmp_path):
    gc.set_threshold(700, 10, 10)
    host = start_host(tmp_path / "host")
    try:
        assert gc.get_threshold() == (YOUNG_GENERATION, 10, 10)
    finally:
        host.stop()


