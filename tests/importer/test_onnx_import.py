"""Import hand-built ONNX graphs (BN fused / not fused) into a toy model: exactness and errors."""
import numpy as np
import paddle
import pytest
import yaml

from conftest import load_script, toy_model_config

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from ppdistill.importer import ImportFailed, import_weights  # noqa: E402
from ppdistill.importer.graph import weighted_ops  # noqa: E402
from ppdistill.importer.matcher import match  # noqa: E402
from ppdistill.importer.model_units import group_units, record_calls  # noqa: E402
from ppdistill.importer.onnx_reader import read_onnx  # noqa: E402
from ppdistill.importer.runners import run_onnx  # noqa: E402

RNG = np.random.RandomState(7)


def _cli():
    return load_script("tools/import_weights.py", "import_weights_tool").main


def _rand(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype("float32")


def _source_weights(out1=4):
    """Weights of the toy net conv(3->out1, 3x3 s2, bias) -> BN -> relu -> conv1x1 -> sigmoid."""
    return {"w1": _rand(out1, 3, 3, 3), "b1": _rand(out1), "gamma": 1 + _rand(out1, scale=0.2),
            "beta": _rand(out1), "mean": _rand(out1), "var": (0.5 + RNG.rand(out1)).astype("f4"),
            "w2": _rand(3, out1, 1, 1), "b2": _rand(3)}


def _save(path, nodes, inits, opset=13):
    graph = helper.make_graph(
        nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, str(path))
    return str(path)


def toy_onnx(path, w, fuse_bn, eps=1e-5, last="Sigmoid"):
    inits = {"w2": w["w2"], "b2": w["b2"]}
    conv1 = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    if fuse_bn:
        t = w["gamma"] / np.sqrt(w["var"] + eps)
        inits["w1"] = (w["w1"] * t[:, None, None, None]).astype("float32")
        inits["b1"] = ((w["b1"] - w["mean"]) * t + w["beta"]).astype("float32")
        nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], **conv1),
                 helper.make_node("Relu", ["c1"], ["r1"])]
    else:
        inits.update({"w1": w["w1"], "b1": w["b1"], "g": w["gamma"], "be": w["beta"],
                      "m": w["mean"], "v": w["var"]})
        nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], **conv1),
                 helper.make_node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["n1"],
                                  epsilon=eps),
                 helper.make_node("Relu", ["n1"], ["r1"])]
    nodes += [helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], kernel_shape=[1, 1]),
              helper.make_node(last, ["c2"], ["y"])]
    return _save(path, nodes, inits)


def _config():
    return {"Global": {}, "Architecture": toy_model_config()}


def test_fused_bn_becomes_identity_bn_and_function_is_exact(tmp_path):
    w = _source_weights()
    result = import_weights(_config(), toy_onnx(tmp_path / "m.onnx", w, fuse_bn=True))
    state = {k: np.asarray(v) for k, v in result.state_dict.items()}
    assert result.max_diff < 1e-6
    np.testing.assert_array_equal(state["backbone.bn.weight"], np.ones(4, "float32"))
    np.testing.assert_array_equal(state["backbone.bn._mean"], np.zeros(4, "float32"))
    eps = np.float32(1e-5)
    np.testing.assert_array_equal(state["backbone.bn._variance"], np.full(4, 1 - eps, "float32"))
    assert np.float32(np.float32(1 - eps) + eps) == np.float32(1.0)
    # the fused bias sits in the conv bias (the toy conv has one), the BN bias is zero
    t = w["gamma"] / np.sqrt(w["var"] + 1e-5)
    np.testing.assert_allclose(state["backbone.conv.bias"], (w["b1"] - w["mean"]) * t + w["beta"],
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(state["backbone.bn.bias"], np.zeros(4, "float32"))
    np.testing.assert_array_equal(state["head.conv.weight"], w["w2"])
    assert result.untouched == []


def test_unfused_bn_with_other_eps_is_copied_and_compensated(tmp_path):
    w = _source_weights()
    result = import_weights(_config(), toy_onnx(tmp_path / "m.onnx", w, fuse_bn=False, eps=1e-3))
    state = {k: np.asarray(v) for k, v in result.state_dict.items()}
    assert result.max_diff < 1e-6
    np.testing.assert_array_equal(state["backbone.conv.weight"], w["w1"])
    np.testing.assert_array_equal(state["backbone.bn._mean"], w["mean"])
    np.testing.assert_allclose(state["backbone.bn._variance"], w["var"] + 1e-3 - 1e-5, rtol=1e-6)


def test_imported_model_matches_onnxruntime_on_another_input(tmp_path):
    w = _source_weights()
    path = toy_onnx(tmp_path / "m.onnx", w, fuse_bn=True)
    result = import_weights(_config(), path)
    from ppdistill.modeling.architectures import build_model
    model = build_model(toy_model_config())
    model.set_state_dict(result.state_dict)
    model.eval()
    image = RNG.uniform(0, 1, (2, 3, 37, 50)).astype("float32")
    mine = model(paddle.to_tensor(image))["maps"].numpy()
    np.testing.assert_allclose(mine, run_onnx(path, image), atol=1e-6)


def test_structure_mismatch_names_the_first_layer_that_does_not_fit(tmp_path):
    w = _source_weights(out1=5)
    with pytest.raises(ImportFailed) as info:
        import_weights(_config(), toy_onnx(tmp_path / "m.onnx", w, fuse_bn=True))
    message = str(info.value)
    assert message.startswith("structure mismatch: layer 'backbone.conv'")
    assert "[5, 3, 3, 3]" in message and "\n" not in message


def test_numbers_mismatch_fails_above_tolerance(tmp_path):
    w = _source_weights()
    path = toy_onnx(tmp_path / "m.onnx", w, fuse_bn=True, last="Tanh")
    with pytest.raises(ImportFailed, match="max abs difference .* exceeds 0.0001"):
        import_weights(_config(), path)


# ----------------------------------------------------------------- CLI


def _write_config(tmp_path):
    path = tmp_path / "toy.yml"
    path.write_text(yaml.safe_dump(_config()))
    return str(path)


def test_cli_writes_a_loadable_pdparams(tmp_path, capsys):
    main = _cli()
    source = toy_onnx(tmp_path / "m.onnx", _source_weights(), fuse_bn=True)
    out = tmp_path / "out" / "toy.pdparams"
    assert main(["-c", _write_config(tmp_path), "--source", source, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max abs difference" in printed and "wrote 8 tensors" in printed
    state = paddle.load(str(out))
    assert sorted(state) == sorted(k for k in state if k.startswith(("backbone.", "head.")))
    assert len(state) == 8


def test_cli_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys):
    main = _cli()
    config = _write_config(tmp_path)
    out = tmp_path / "bad.pdparams"
    bad = toy_onnx(tmp_path / "bad.onnx", _source_weights(out1=6), fuse_bn=False)
    cases = [["--source", bad],
             ["--source", str(tmp_path / "missing.onnx")],
             ["--source", toy_onnx(tmp_path / "tanh.onnx", _source_weights(), True, last="Tanh")],
             ["--source", bad, "--model", "Student"]]
    for extra in cases:
        assert main(["-c", config, "--out", str(out)] + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
        assert not out.exists()


# ------------------------------------------------ decomposed LayerNorm, LAB, fixed scale ops


class _Affine(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        constant = paddle.nn.initializer.Constant
        self.scale = self.create_parameter([1], default_initializer=constant(1.0))
        self.bias = self.create_parameter([1], default_initializer=constant(0.0))

    def forward(self, x):
        return self.scale * x + self.bias


class _Net(paddle.nn.Layer):
    """linear -> fixed x*0.5+0 -> LayerNorm -> learnable scalar affine -> linear (no bias)."""

    def __init__(self):
        super().__init__()
        self.fc1 = paddle.nn.Linear(4, 6)
        self.norm = paddle.nn.LayerNorm(6)
        self.lab = _Affine()
        self.fc2 = paddle.nn.Linear(6, 3, bias_attr=False)

    def forward(self, x):
        return self.fc2(self.lab(self.norm(self.fc1(x) * 0.5)))


def _net_onnx(path, p):
    c = {"w1": p["w1"], "b1": p["b1"], "half": np.array([0.5], "f4"), "zero": np.array([0.0], "f4"),
         "two": np.array(2.0, "f4"), "eps": np.array(1e-5, "f4"), "g": p["g"], "be": p["be"],
         "ls": p["ls"], "lb": p["lb"], "w2": p["w2"], "shape": np.array([6], "int64")}
    n = helper.make_node
    nodes = [n("MatMul", ["x", "w1"], ["m1"]), n("Add", ["m1", "b1"], ["a1"]),
             n("Mul", ["a1", "half"], ["s1"]), n("Add", ["s1", "zero"], ["s2"]),
             n("ReduceMean", ["s2"], ["mu"], axes=[-1]), n("Sub", ["s2", "mu"], ["d"]),
             n("Pow", ["d", "two"], ["d2"]), n("ReduceMean", ["d2"], ["v"], axes=[-1]),
             n("Add", ["v", "eps"], ["ve"]), n("Sqrt", ["ve"], ["sd"]),
             n("Div", ["d", "sd"], ["z"]),
             n("Reshape", ["g", "shape"], ["g2"]),
             n("Mul", ["z", "g2"], ["zg"]), n("Add", ["zg", "be"], ["ln"]),
             n("Mul", ["ls", "ln"], ["l1"]), n("Add", ["l1", "lb"], ["l2"]),
             n("MatMul", ["l2", "w2"], ["y"])]
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in c.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def test_layernorm_scalar_affine_and_fixed_scale_ops(tmp_path):
    p = {"w1": _rand(4, 6), "b1": _rand(6), "g": 1 + _rand(6, scale=0.1), "be": _rand(6),
         "ls": np.array([1.3], "f4"), "lb": np.array([-0.2], "f4"), "w2": _rand(6, 3)}
    path = _net_onnx(tmp_path / "net.onnx", p)
    graph, _ = read_onnx(path)
    ops = weighted_ops(graph)
    assert [op.kind for op in ops] == ["linear", "affine", "affine", "affine", "linear"]
    net = _Net()
    x = RNG.standard_normal((5, 4)).astype("float32")
    _, calls = record_calls(net, [paddle.to_tensor(x)])
    units = group_units(net, calls)
    assert [u.kind for u in units] == ["linear", "ln", "affine", "linear"]
    updates = match(units, ops)
    net.set_state_dict({k: paddle.to_tensor(v) for k, v in updates.items()})
    net.eval()
    np.testing.assert_allclose(net(paddle.to_tensor(x)).numpy(), run_onnx(path, x), atol=2e-6)
    np.testing.assert_array_equal(updates["lab.scale"], p["ls"])
    np.testing.assert_array_equal(updates["norm.weight"], p["g"])


def test_distillation_sub_model_keys_carry_its_prefix_and_load_as_pretrained(tmp_path):
    from ppdistill.modeling.architectures import build_model
    from ppdistill.utils.save_load import load_pretrained_params
    arch = {"name": "DistillationModel", "model_type": "det", "Models": {
        "Teacher": dict(toy_model_config(6), freeze_params=True, pretrained="/nonexistent"),
        "Student": toy_model_config(4)}}
    config = {"Global": {}, "Architecture": arch}
    w = _source_weights()
    source = toy_onnx(tmp_path / "m.onnx", w, fuse_bn=False)
    result = import_weights(config, source, model_name="Student")
    assert sorted(result.state_dict) == sorted(
        "Student." + k for k in build_model(toy_model_config(4)).state_dict())
    assert arch["Models"]["Teacher"]["pretrained"] == "/nonexistent"  # caller's config intact
    out = tmp_path / "student.pdparams"
    paddle.save(result.state_dict, str(out))
    arch["Models"]["Teacher"].pop("pretrained")
    model = build_model(arch)
    report = load_pretrained_params(model, str(out))
    assert len(report.loaded) == 8 and not report.unexpected
    np.testing.assert_array_equal(model.Student.backbone.conv.weight.numpy(), w["w1"])
    with pytest.raises(ImportFailed, match="layer 'backbone.conv'"):
        import_weights(config, source, model_name="Teacher")


def test_dictionary_carried_by_the_export_must_match_the_config(tmp_path):
    from ppdistill.importer.core import _check_dictionary
    dict_path = tmp_path / "dict.txt"
    dict_path.write_text("a\nb\nc\n", encoding="utf-8")
    config = {"Global": {"character_dict_path": str(dict_path), "use_space_char": True},
              "Architecture": {"model_type": "rec"}}
    assert _check_dictionary(config, {"character": "a\nb\nc"}) == 3
    assert _check_dictionary(config, {}) is None
    with pytest.raises(ImportFailed, match=r"dictionary mismatch: .*3 entries\) differs from "
                                           r".*\(3 entries\) at entry 2"):
        _check_dictionary(config, {"character": "a\nx\nc"})
    with pytest.raises(ImportFailed, match="at entry 4"):
        _check_dictionary(config, {"character": "a\nb\nc\nd"})


def test_missing_onnx_packages_give_an_install_hint(tmp_path, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "onnx", None)
    source = toy_onnx(tmp_path / "m.onnx", _source_weights(), fuse_bn=True)
    out = tmp_path / "x.pdparams"
    assert _cli()(["-c", _write_config(tmp_path), "--source", source, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the 'onnx' and 'onnxruntime' packages are needed")
    assert "pip install 'ppdistill[onnx]'" in err and not out.exists()
