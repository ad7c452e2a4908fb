"""Method registry: lookup by name / module:Class / file path, and contract errors that name the broken part."""

import textwrap

import pytest

from bench.config import available_recipes, make_config
from bench.errors import PluginError
from methods import available_methods, get_method, validate_method_class
from methods.base import Method

GOOD = '''
import torch
from bench.augment import ViewSpec
from methods.base import Method

class Tiny(Method):
    name = "tiny-plugin"
    views = [ViewSpec(), ViewSpec()]
    def __init__(self, backbone, scale=1.0):
        super().__init__(backbone)
        self.scale = scale
    def training_loss(self, views):
        a, b = self.backbone(views[0]), self.backbone(views[1])
        return self.scale * (a - b).pow(2).mean()
'''


def write(tmp_path, body, name="plugin.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_builtins_registered():
    names = available_methods()
    assert {"simclr", "barlow-twins", "random"} <= set(names)
    assert get_method("barlow_twins") is names["barlow-twins"]


def test_module_class_reference():
    cls = get_method("methods.simclr:SimCLR")
    assert cls.name == "simclr"


def test_load_from_file(tmp_path):
    cls = get_method(str(write(tmp_path, GOOD)))
    assert cls.name == "tiny-plugin" and issubclass(cls, Method)
    assert get_method(f"{write(tmp_path, GOOD, 'again.py')}:Tiny").name == "tiny-plugin"


def test_unknown_method_suggests():
    with pytest.raises(PluginError, match=r"unknown method 'simclrr'.*Did you mean 'simclr'"):
        get_method("simclrr")


@pytest.mark.parametrize("broken, fragment", [
    (GOOD.replace('name = "tiny-plugin"', ''), "class attribute `name`"),
    (GOOD.replace("views = [ViewSpec(), ViewSpec()]", "views = 2"), "`views`"),
    (GOOD.replace("def training_loss(self, views):", "def training_loss(self):"), "training_loss must take exactly one argument"),
    (GOOD.replace("def training_loss(self, views):", "def other(self, views):"), "must implement training_loss"),
    (GOOD.replace("def __init__(self, backbone, scale=1.0):", "def __init__(self, scale=1.0, *, backbone=None):"), "__init__ must take the backbone"),
    (GOOD.replace("class Tiny(Method):", "class Tiny:"), "defines no subclass of methods.base.Method"),
    (GOOD + "\nraise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
])
def test_broken_plugins_name_the_problem(tmp_path, broken, fragment):
    with pytest.raises(PluginError) as err:
        get_method(str(write(tmp_path, broken)))
    assert fragment in str(err.value)


def test_missing_file_and_module():
    with pytest.raises(PluginError, match="not found"):
        get_method("nope/does_not_exist.py")
    with pytest.raises(PluginError, match="cannot import plugin module"):
        get_method("no_such_module_xyz:Cls")


def test_encoder_must_be_property():
    class Bad(Method):
        name = "bad"
        views = available_methods()["simclr"].views
        def training_loss(self, views):
            return 0
        def encoder(self):
            return self.backbone
    with pytest.raises(PluginError, match="`encoder` must be a property"):
        validate_method_class(Bad)


@pytest.mark.parametrize("recipe", available_recipes())
def test_every_shipped_recipe_builds_its_method_and_encodes(recipe):
    """A typo in a recipe (key, method kwarg, backbone option) fails here, not hours into a run."""
    import torch

    from bench.runner import build_method

    cfg = make_config(recipe)
    method = build_method(cfg)
    backbone = method.encoder
    x = torch.zeros(2, 8, 3, cfg.img_size, cfg.img_size) if hasattr(backbone, "grid") else \
        torch.zeros(2, 3, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        assert backbone.eval()(x).shape == (2, backbone.embed_dim)
