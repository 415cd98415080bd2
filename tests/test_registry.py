import pytest

from ppdistill.registry import ConfigError, Registry


def make_registry():
    reg = Registry("widget")

    @reg.register()
    class Widget:
        def __init__(self, size=1, colour="red"):
            self.size, self.colour = size, colour

    return reg, Widget


def test_build_and_no_mutation():
    reg, widget_cls = make_registry()
    cfg = {"name": "Widget", "size": 3}
    obj = reg.build(cfg, "W")
    assert isinstance(obj, widget_cls) and obj.size == 3
    assert cfg == {"name": "Widget", "size": 3}


def test_unknown_name_suggests():
    reg, _ = make_registry()
    with pytest.raises(ConfigError, match=r"Loss.name: unknown widget 'Widgte'; did you mean 'Widget'\?"):
        reg.build({"name": "Widgte"}, "Loss")


def test_unexpected_key_suggests():
    reg, _ = make_registry()
    with pytest.raises(ConfigError, match=r"W: unexpected key 'colur'.*did you mean 'colour'"):
        reg.build({"name": "Widget", "colur": "blue"}, "W")


def test_duplicate_registration_fails():
    reg, widget_cls = make_registry()
    with pytest.raises(KeyError, match="already registered"):
        reg.register("Widget")(widget_cls)


def test_single_key_form_and_defaults():
    reg, _ = make_registry()
    obj = reg.build_single_key({"Widget": None}, "T[0]", defaults={"colour": "blue", "other": 1})
    assert obj.colour == "blue" and obj.size == 1
    obj = reg.build_single_key({"Widget": {"colour": "green"}}, "T[0]", defaults={"colour": "b"})
    assert obj.colour == "green"
    with pytest.raises(ConfigError, match=r"T\[0\]: expected a one-key mapping"):
        reg.build_single_key({"Widget": None, "X": None}, "T[0]")
