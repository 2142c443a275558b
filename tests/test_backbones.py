"""Backbones: layer groups, forward shapes, name hints, weights from files or a missing hub."""

from __future__ import annotations

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

import transferlab.backbones
from transferlab.backbones import Backbone, create_backbone, layer_groups
from transferlab.errors import ConfigError

FIX = "set backbone.name to the model the file was saved from"


def random_state(name: str = "test_resnet", **kwargs) -> dict[str, torch.Tensor]:
    """A backbone state dict with every float tensor re-drawn, so no fresh model matches it."""
    state = create_backbone(name, **kwargs).model.state_dict()
    return {
        k: (torch.rand_like(v) + 0.5 if "running_var" in k else torch.randn_like(v))
        if v.is_floating_point()
        else v
        for k, v in state.items()
    }


def assert_has_weights(
    backbone: Backbone, state: dict[str, torch.Tensor], skip: tuple[str, ...] = ()
) -> None:
    own = backbone.model.state_dict()
    assert set(own) == {k for k in state if not k.startswith(skip)}
    for key, value in own.items():
        assert torch.equal(value, state[key]), key


# -- groups and forward ---------------------------------------------------------------------------


def test_test_resnet_groups_and_forward():
    backbone = create_backbone("test_resnet")
    assert [g.name for g in backbone.groups] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    names = [n for g in backbone.groups for n in g.param_names]
    assert sorted(names) == sorted(n for n, _ in backbone.model.named_parameters())
    assert len(names) == len(set(names))  # every parameter in exactly one group
    assert all(n.startswith(("conv1.", "bn1.")) for n in backbone.groups[0].param_names)
    assert all(n.startswith("layer4.") for n in backbone.groups[-1].param_names)
    assert backbone.groups[0].param_names[0] == "conv1.0.weight"
    out = backbone(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, backbone.num_features)
    assert backbone.num_features == backbone.model.num_features > 0


@pytest.mark.parametrize("name", ["test_efficientnet", "test_vit", "test_convnext"])
def test_groups_cover_every_parameter_once(name):
    backbone = create_backbone(name)
    groups = [g.name for g in backbone.groups]
    assert groups[0] == "stem" and len(groups) > 2
    assert len(set(groups)) == len(groups) and "head" not in groups  # "head" is the classifier's
    names = [n for g in backbone.groups for n in g.param_names]
    assert sorted(names) == sorted(n for n, _ in backbone.model.named_parameters())


def test_grey_input_channels():
    backbone = create_backbone("test_resnet", in_chans=1)
    assert backbone.model.conv1[0].weight.shape[1] == 1
    assert backbone(torch.randn(2, 1, 32, 32)).shape == (2, backbone.num_features)


def test_layer_groups_of_a_plain_sequential():
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(4)])
    groups = layer_groups(model)
    assert [g.name for g in groups] == ["0", "1", "2", "3"]
    assert [g.param_names for g in groups] == [(f"{i}.weight", f"{i}.bias") for i in range(4)]
    assert [g.name for g in Backbone(model, num_features=8).groups] == ["0", "1", "2", "3"]


# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnt18", "resnet1800"])
def test_unknown_backbone_suggests_close_names(name):
    with pytest.raises(ConfigError, match=f"Unknown backbone '{name}'") as info:
        create_backbone(name)
    assert "did you mean" in str(info.value) and "resnet18" in str(info.value)


def test_unknown_backbone_without_close_names():
    with pytest.raises(ConfigError, match="timm.list_models"):
        create_backbone("qqqzzzxxx")


# -- weights files --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["safetensors", "pth"])
def test_weights_file_is_loaded_exactly(tmp_path, suffix):
    state = random_state()
    path = tmp_path / f"backbone.{suffix}"
    if suffix == "safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    backbone = create_backbone("test_resnet", weights=str(path))
    assert_has_weights(backbone, state)


def test_weights_with_classifier_drop_it(tmp_path):
    full = timm.create_model("test_resnet", num_classes=7).state_dict()
    assert {"fc.weight", "fc.bias"} <= set(full)
    torch.save(full, tmp_path / "classifier.pth")
    backbone = create_backbone("test_resnet", weights=str(tmp_path / "classifier.pth"))
    assert_has_weights(backbone, full, skip=("fc.",))
    assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, backbone.num_features)


def test_lightning_checkpoint_loads_backbone_part(tmp_path):
    state = random_state()
    ckpt = {
        "epoch": 3,
        "state_dict": {
            **{f"backbone.model.{k}": v for k, v in state.items()},
            "head.0.weight": torch.randn(5, 96),
            "head.0.bias": torch.zeros(5),
        },
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    backbone = create_backbone("test_resnet", weights=str(tmp_path / "last.ckpt"))
    assert_has_weights(backbone, state)


def test_rgb_weights_load_into_grey_model(tmp_path):
    state = random_state()
    torch.save(state, tmp_path / "rgb.pth")
    backbone = create_backbone("test_resnet", weights=str(tmp_path / "rgb.pth"), in_chans=1)
    conv = backbone.model.conv1[0].weight
    assert conv.shape == (16, 1, 3, 3)
    torch.testing.assert_close(conv, state["conv1.0.weight"].sum(1, keepdim=True))
    own = backbone.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items() if k != "conv1.0.weight")
    assert backbone(torch.randn(2, 1, 32, 32)).shape == (2, backbone.num_features)


def test_grey_weights_load_into_rgb_model(tmp_path):
    torch.save(random_state(in_chans=1), tmp_path / "grey.pth")
    backbone = create_backbone("test_resnet", weights=str(tmp_path / "grey.pth")).eval()
    assert backbone.model.conv1[0].weight.shape == (16, 3, 3, 3)
    grey = create_backbone("test_resnet", in_chans=1, weights=str(tmp_path / "grey.pth")).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():  # a grey image shown as RGB gives the grey model's features
        as_rgb, as_grey = backbone(x.repeat(1, 3, 1, 1)), grey(x)
    # random weights give activations of any size, so compare relative to the largest one
    scale = as_grey.abs().max()
    torch.testing.assert_close(as_rgb / scale, as_grey / scale, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("saved_from", "target", "what"),
    [
        ("resnet18", "test_resnet", "has shape"),
        ("test_resnet", "test_efficientnet", "has shape"),
    ],
)
def test_weights_of_another_model_do_not_fit(tmp_path, saved_from, target, what):
    torch.save(timm.create_model(saved_from, num_classes=0).state_dict(), tmp_path / "w.pth")
    with pytest.raises(ConfigError, match="does not fit this backbone") as info:
        create_backbone(target, weights=str(tmp_path / "w.pth"))
    assert what in str(info.value) and FIX in str(info.value)
    assert str(tmp_path / "w.pth") in str(info.value)


def test_weights_missing_a_tensor_do_not_fit(tmp_path):
    state = random_state()
    del state["layer4.0.conv1.weight"]
    save_file(state, tmp_path / "partial.safetensors")
    with pytest.raises(ConfigError, match="lacks 'layer4.0.conv1.weight'") as info:
        create_backbone("test_resnet", weights=str(tmp_path / "partial.safetensors"))
    assert FIX in str(info.value)


def test_weights_with_an_extra_tensor_do_not_fit(tmp_path):
    state = {**random_state(), "extra.weight": torch.zeros(3)}
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(ConfigError, match="extra tensor 'extra.weight'"):
        create_backbone("test_resnet", weights=str(tmp_path / "extra.pth"))


def test_missing_weights_file(tmp_path):
    path = tmp_path / "nowhere" / "backbone.safetensors"
    with pytest.raises(ConfigError, match="does not exist") as info:
        create_backbone("test_resnet", weights=str(path))
    assert str(path) in str(info.value) and "backbone.weights" in str(info.value)


def test_pretrained_and_weights_together(tmp_path):
    torch.save(random_state(), tmp_path / "w.pth")
    with pytest.raises(ConfigError, match="not both"):
        create_backbone("test_resnet", pretrained=True, weights=str(tmp_path / "w.pth"))


# -- hub weights without network ------------------------------------------------------------------

HUB_FIX = "backbone.weights=<local file> or backbone.pretrained=false"


def test_pretrained_offline_with_empty_cache(tmp_path, monkeypatch):
    # huggingface_hub reads HF_HUB_OFFLINE and the cache path at import; patch the module too
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="Could not load hub weights for 'test_resnet'") as info:
        create_backbone("test_resnet", pretrained=True)
    assert HUB_FIX in str(info.value) and "hub cache" in str(info.value)


def test_pretrained_unreachable_hub(monkeypatch):
    real = timm.create_model

    def offline_create_model(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("[Errno -2] Name or service not known")
        return real(name, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(transferlab.backbones.vision.timm, "create_model", offline_create_model)
    with pytest.raises(ConfigError, match=r"\(OSError\)") as info:
        create_backbone("test_resnet", pretrained=True)
    assert HUB_FIX in str(info.value)
    assert create_backbone("test_resnet").num_features > 0  # without pretrained: no hub needed
