"""Tests of the networks in MultiModalSegLib.models: real torch modules, tiny sizes."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.models import MAML, DTCVNet, build_model

MODALITIES = ["t1", "t2", "flair"]
SUBSETS = [list(c) for r in (1, 2, 3) for c in itertools.combinations(MODALITIES, r)]


def tiny_maml(**overrides) -> MAML:
    options = {"modalities": MODALITIES, "num_classes": 3, "base_filters": 4, "max_filters": 8, "num_stages": 3}
    options.update(overrides)
    torch.manual_seed(0)
    return MAML(**options)


def random_input(channels: int = 3, size=(8, 8, 8), batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, channels, *size, generator=generator)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- MAML: missing modalities

@pytest.mark.parametrize("available", SUBSETS, ids=["+".join(s) for s in SUBSETS])
@pytest.mark.parametrize("absent_fill", ["mean", "zeros"])
def test_maml_every_subset_uses_only_present_modalities(available, absent_fill):
    model = tiny_maml(absent_fill=absent_fill).eval()
    x = random_input()
    absent = [i for i, name in enumerate(MODALITIES) if name not in available]

    calls = {name: 0 for name in MODALITIES}
    for name, branch in zip(MODALITIES, model.branches):
        branch.register_forward_hook(lambda *_args, name=name: calls.__setitem__(name, calls[name] + 1))

    with torch.no_grad():
        out = model(x, available=available)
        garbage = x.clone()
        garbage[:, absent] = float("nan")  # any use of an absent channel would spread NaN
        out_garbage = model(garbage, available=available)
        out_all = model(x)

    assert calls == {name: (2 if name in available else 0) + 1 for name in MODALITIES}
    assert out["joint"].shape == (2, 3, 8, 8, 8)
    assert set(out["branches"]) == set(available) == set(out["attention"])
    for name in available:
        assert out["branches"][name].shape == (2, 3, 8, 8, 8)
        assert out["attention"][name].shape == (2, 4, 8, 8, 8)
        assert ((out["attention"][name] >= 0) & (out["attention"][name] <= 1)).all()
        # each branch predicts from its own modality alone, whatever else is present
        torch.testing.assert_close(out["branches"][name], out_all["branches"][name], rtol=0, atol=0)

    assert torch.isfinite(out_garbage["joint"]).all()
    assert torch.equal(out["joint"], out_garbage["joint"])
    for name in available:
        assert torch.equal(out["branches"][name], out_garbage["branches"][name])
        assert torch.equal(out["attention"][name], out_garbage["attention"][name])

    if len(available) == 1:
        (name,) = available
        assert torch.equal(out["joint"], out["branches"][name])
        assert torch.equal(out["attention"][name], torch.ones(2, 4, 8, 8, 8))
    else:
        assert not torch.equal(out["joint"], out["branches"][available[0]])


def _manual_joint(model: MAML, x: torch.Tensor, available: list[str], fill: str) -> torch.Tensor:
    """The MAML fusion written out from the paper's equations, using the model's layers."""
    features = {name: model.branches[i](x[:, i:i + 1]).features
                for i, name in enumerate(MODALITIES) if name in available}
    present = list(features.values())
    if fill == "mean":
        filler = sum(present) / len(present)
    else:
        filler = torch.zeros_like(present[0])
    dual = model.fusion(torch.cat([features.get(name, filler) for name in MODALITIES], dim=1))
    fused = 0
    for i, name in enumerate(MODALITIES):
        if name in features:
            layers = model.modality_aware[i].layers
            hidden = layers[:3](torch.cat([features[name], dual], dim=1))
            fused = fused + torch.sigmoid(layers[3](hidden)) * features[name]
    return model.joint_head(fused)


@pytest.mark.parametrize("available,fill",
                         [(MODALITIES, "mean"), (["t1", "flair"], "mean"), (["t2", "flair"], "zeros")])
def test_maml_joint_output_follows_the_paper_equations(available, fill):
    model = tiny_maml(absent_fill=fill).eval()
    x = random_input()
    with torch.no_grad():
        joint = model(x, available=available)["joint"]
        expected = _manual_joint(model, x, available, fill)
    torch.testing.assert_close(joint, expected, rtol=1e-5, atol=1e-6)


def test_maml_absent_fill_choice_matters_only_when_a_modality_is_absent():
    mean_model = tiny_maml(absent_fill="mean").eval()
    zeros_model = tiny_maml(absent_fill="zeros").eval()
    zeros_model.load_state_dict(mean_model.state_dict())
    x = random_input()
    with torch.no_grad():
        assert torch.equal(mean_model(x)["joint"], zeros_model(x)["joint"])
        subset = ["t1", "t2"]
        assert not torch.allclose(mean_model(x, subset)["joint"], zeros_model(x, subset)["joint"])


def test_maml_single_modality_model_is_one_branch():
    model = MAML(["ct"], num_classes=2, base_filters=4, max_filters=8, num_stages=3).eval()
    assert not hasattr(model, "fusion")
    assert count_parameters(model) == count_parameters(model.branches[0])
    with torch.no_grad():
        out = model(random_input(channels=1))
    assert torch.equal(out["joint"], out["branches"]["ct"])


def test_maml_rejects_bad_inputs_with_a_user_error():
    model = tiny_maml().eval()
    with pytest.raises(MultiModalSegError, match="t1, t2, flair"):
        model(random_input(channels=2))
    with pytest.raises(MultiModalSegError, match="Unknown modality 't1ce'"):
        model(random_input(), available=["t1ce"])
    with pytest.raises(MultiModalSegError, match="at least one"):
        model(random_input(), available=[])
    with pytest.raises(MultiModalSegError, match="multiple of"):
        model(random_input(size=(8, 8, 6)))


# ---------------------------------------------------------------- MAML: architecture

def test_maml_widths_follow_nnunet_and_cap_at_max_filters():
    model = MAML(["a", "b"], num_classes=2, base_filters=4, max_filters=10, num_stages=4)
    branch = model.branches[0]
    assert branch.widths == [4, 8, 10, 10]
    assert [stage[0][0].out_channels for stage in branch.encoder] == [4, 8, 10, 10]
    assert [stage[0][0].stride for stage in branch.encoder] == [(1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2)]
    assert all(len(stage) == 2 for stage in list(branch.encoder) + list(branch.decoder))
    assert all(isinstance(stage[1][1], nn.InstanceNorm3d) and stage[1][1].affine for stage in branch.encoder)
    assert all(up.bias is None for up in branch.upsamplers)
    assert model.fusion.in_channels == 2 * 4 and model.fusion.out_channels == 4
    assert model.joint_head.bias is None


@pytest.mark.parametrize("ma_kernel,second_kernel", [("reference", (3, 3, 3)), ("slide", (1, 1, 1))])
def test_maml_modality_aware_kernel_choice(ma_kernel, second_kernel):
    model = tiny_maml(ma_kernel=ma_kernel)
    convs = [m for m in model.modality_aware[0].modules() if isinstance(m, nn.Conv3d)]
    assert [c.kernel_size for c in convs] == [(3, 3, 3), second_kernel]
    with torch.no_grad():
        assert model.eval()(random_input())["joint"].shape == (2, 3, 8, 8, 8)


def test_maml_deep_supervision_with_anisotropic_strides():
    strides = [(1, 2, 2), (2, 2, 2), (2, 2, 2)]
    kernels = [(1, 3, 3), 3, 3, 3]
    model = MAML(["art", "ven"], num_classes=2, base_filters=4, max_filters=16, strides=strides,
                 kernel_sizes=kernels, deep_supervision=True)
    assert model.config.num_stages == 4
    assert model.input_divisor == (4, 8, 8)
    x = random_input(channels=2, size=(4, 16, 16), batch=1)

    out = model.train()(x)
    assert out["joint"].shape == (1, 2, 4, 16, 16)
    assert "joint_deep" not in out
    for name in ("art", "ven"):
        assert [tuple(t.shape) for t in out["branches_deep"][name]] == [(1, 2, 4, 8, 8), (1, 2, 2, 4, 4)]
    assert list(model(x, available=["ven"])["branches_deep"]) == ["ven"]

    with torch.no_grad():
        assert "branches_deep" not in model.eval()(x)
    with pytest.raises(MultiModalSegError, match=r"multiple of \[4, 8, 8\]"):
        model(random_input(channels=2, size=(6, 16, 16), batch=1))

    plain = MAML(["art", "ven"], num_classes=2, base_filters=4, strides=strides, deep_supervision=False).train()
    assert "branches_deep" not in plain(x)


def test_maml_backward_reaches_every_parameter():
    model = tiny_maml(num_stages=4, deep_supervision=True).train()
    x = random_input(size=(8, 16, 16))  # the bottleneck (1, 2, 2) needs more than one voxel for InstanceNorm
    target = torch.randint(0, 3, (2, 8, 16, 16), generator=torch.Generator().manual_seed(2))
    out = model(x)
    loss = nn.functional.cross_entropy(out["joint"], target)
    for name in MODALITIES:
        loss = loss + nn.functional.cross_entropy(out["branches"][name], target)
        for deep in out["branches_deep"][name]:
            loss = loss + deep.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


# ---------------------------------------------------------------- DTCVNet

def test_dtc_vnet_has_the_papers_parameter_count():
    model = DTCVNet(in_channels=1, num_classes=1, base_filters=16)
    assert count_parameters(model) == pytest.approx(9.44e6, rel=0.01)


def test_dtc_vnet_stages_match_the_reference():
    model = DTCVNet(1, 1, base_filters=2)

    def convs(stage):
        return [m for m in stage.modules() if isinstance(m, nn.Conv3d)]

    assert [len(convs(s)) for s in model.encoder] == [1, 2, 3, 3, 3]
    assert [len(convs(s)) for s in model.decoder] == [3, 3, 2, 1]
    assert [convs(s)[0].out_channels for s in model.encoder] == [2, 4, 8, 16, 32]
    assert all(isinstance(m, nn.BatchNorm3d) for s in model.encoder for m in s.modules()
               if isinstance(m, (nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm3d)))
    assert [d[0].kernel_size for d in model.downsamplers] == [(2, 2, 2)] * 4
    assert [u[0].stride for u in model.upsamplers] == [(2, 2, 2)] * 4


def test_dtc_vnet_outputs_and_dropout():
    torch.manual_seed(0)
    model = DTCVNet(in_channels=2, num_classes=2, base_filters=4)
    assert model.input_divisor == (16, 16, 16)
    x = random_input(channels=2, size=(16, 16, 32))
    model.eval()
    with torch.no_grad():
        seg, level_set = model(x)
        seg_again, _ = model(x)
    assert seg.shape == level_set.shape == (2, 2, 16, 16, 32)
    assert level_set.abs().max() <= 1
    assert torch.equal(seg, seg_again)  # dropout off in eval mode

    model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        first, _ = model(x)
        torch.manual_seed(2)
        second, _ = model(x)
    assert not torch.allclose(first, second)  # Dropout3d(0.5) active while training

    no_dropout = DTCVNet(2, 2, base_filters=4, has_dropout=False)
    no_dropout.load_state_dict(model.state_dict())
    no_dropout.train()
    with torch.no_grad():
        assert torch.equal(no_dropout(x)[0], no_dropout(x)[0])


def test_dtc_vnet_backward_reaches_every_parameter():
    model = DTCVNet(1, 1, base_filters=4).train()
    x = random_input(channels=1, size=(16, 16, 16))
    seg, level_set = model(x)
    (seg.square().mean() + (level_set - 0.5).square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_dtc_vnet_rejects_bad_inputs_with_a_user_error():
    model = DTCVNet(1, 1, base_filters=2).eval()
    with pytest.raises(MultiModalSegError, match="multiple of"):
        model(torch.zeros(1, 1, 16, 16, 20))
    with pytest.raises(MultiModalSegError, match=r"\[batch, 1, z, y, x\]"):
        model(torch.zeros(1, 2, 16, 16, 16))


# ---------------------------------------------------------------- build_model

@pytest.mark.parametrize("make,x", [
    (lambda: tiny_maml(strides=[(1, 2, 2), (2, 2, 2)], num_stages=None, ma_kernel="slide", absent_fill="zeros"),
     random_input(size=(4, 8, 8))),
    (lambda: tiny_maml(), random_input()),
    (lambda: DTCVNet(1, 2, base_filters=4, normalization="instancenorm"), random_input(channels=1, size=(16, 16, 32))),
    (lambda: DTCVNet(1, 1, base_filters=16, normalization="groupnorm", has_dropout=False),
     random_input(channels=1, size=(16,) * 3, batch=1)),
], ids=["maml-anisotropic", "maml-default", "dtc-instancenorm", "dtc-groupnorm"])
def test_build_model_round_trip(make, x):
    original = make().eval()
    architecture = json.loads(json.dumps(original.architecture))  # as a manifest stores it
    rebuilt = build_model(architecture).eval()
    assert type(rebuilt) is type(original)
    assert rebuilt.architecture == original.architecture
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in original.state_dict().items()}
    rebuilt.load_state_dict(original.state_dict())
    with torch.no_grad():
        a, b = original(x), rebuilt(x)
    if isinstance(a, dict):
        a, b = a["joint"], b["joint"]
    else:
        a, b = torch.cat(a, 1), torch.cat(b, 1)
    assert torch.equal(a, b)


def test_architecture_records_every_constructor_argument():
    model = MAML(["a", "b"], num_classes=2)
    config = model.architecture["config"]
    assert model.architecture["name"] == "MAML"
    assert config["modalities"] == ["a", "b"] and config["num_stages"] == 6
    assert config["strides"] == [[2, 2, 2]] * 5 and config["kernel_sizes"] == [[3, 3, 3]] * 6
    assert set(config) == {"modalities", "num_classes", "base_filters", "max_filters", "num_stages", "strides",
                           "kernel_sizes", "deep_supervision", "ma_kernel", "absent_fill"}
    assert DTCVNet(1, 1).architecture == {"name": "DTCVNet", "config": {
        "in_channels": 1, "num_classes": 1, "base_filters": 16, "normalization": "batchnorm", "has_dropout": True}}


@pytest.mark.parametrize("architecture,message", [
    ({"name": "UNETR", "config": {}}, "Unknown architecture 'UNETR'"),
    ("MAML", "must be a dict"),
    ({"name": "MAML", "config": {"modalities": ["a"]}}, "needs the setting"),
    ({"name": "MAML", "config": {"modalities": ["a"], "num_classes": 2, "depth": 3}}, "no setting depth"),
    ({"name": "MAML", "config": {"modalities": ["a"], "num_classes": 1}}, "num_classes"),
    ({"name": "MAML", "config": {"modalities": "a", "num_classes": 2}}, "list of modality names"),
    ({"name": "MAML", "config": {"modalities": ["a", "a"], "num_classes": 2}}, "unique"),
    ({"name": "MAML", "config": {"modalities": ["a"], "num_classes": 2, "num_stages": 3,
                                 "strides": [[2, 2, 2]]}}, "needs 2 strides"),
    ({"name": "MAML", "config": {"modalities": ["a"], "num_classes": 2, "strides": [[2, 2]]}}, r"strides\[0\]"),
    ({"name": "MAML", "config": {"modalities": ["a"], "num_classes": 2, "kernel_sizes": [2, 3, 3, 3, 3, 3]}},
     "odd"),
    ({"name": "MAML", "config": {"modalities": ["a"], "num_classes": 2, "ma_kernel": "1x1"}}, "ma_kernel"),
    ({"name": "MAML", "config": {"modalities": ["a"], "num_classes": 2, "absent_fill": "noise"}}, "absent_fill"),
    ({"name": "DTCVNet", "config": {"in_channels": 1, "num_classes": 0}}, "num_classes"),
    ({"name": "DTCVNet", "config": {"in_channels": 1, "num_classes": 1, "normalization": "layernorm"}},
     "normalization"),
    ({"name": "DTCVNet", "config": {"in_channels": 1, "num_classes": 1, "base_filters": 8,
                                    "normalization": "groupnorm"}}, "divisible by 16"),
])
def test_build_model_rejects_bad_architectures(architecture, message):
    with pytest.raises(MultiModalSegError, match=message):
        build_model(architecture)


def test_importing_models_package_does_not_import_torch():
    code = ("import sys, MultiModalSegLib.models as m; assert 'torch' not in sys.modules; "
            "m.build_model; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
