import pytest

from ppdistill.utils.switches import switch_on


@pytest.mark.parametrize("value,expected", [(None, True), ("1", True), ("yes", True),
                                            ("0", False), ("False", False), (" no ", False)])
def test_switch_on(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("PPDISTILL_TEST_SWITCH", raising=False)
    else:
        monkeypatch.setenv("PPDISTILL_TEST_SWITCH", value)
    assert switch_on("PPDISTILL_TEST_SWITCH") is expected
