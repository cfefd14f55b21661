import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import architectures
from architectures import Registry, RegistryError
from tests.conftest import ROOT, link_kaggle_subset


def tiny_builder(input_shape):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def make_registry():
    reg = Registry()
    reg.register("res_small", tags=("residual",), description="a")(tiny_builder)
    reg.register("res_big", tags=("residual", "big"), description="b")(tiny_builder)
    reg.register("plain", description="c")(tiny_builder)
    return reg


def test_builtin_registry_patterns():
    assert architectures.list_architectures("pyramid_*") == ["pyramid_bn_gap", "pyramid_down", "pyramid_up"]
    assert architectures.REGISTRY.broken == []


@pytest.mark.parametrize("name", architectures.list_architectures())
def test_every_registered_architecture_builds_has_one_output_and_trains_a_step(name):
    spec = architectures.get(name)
    assert spec.description and not spec.description.startswith(" ") and spec.source.endswith(".py")
    model = architectures.create(name, (32, 32, 1))
    assert model.output_shape == (None, 1) and model.layers[-1].activation.__name__ == "sigmoid"
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = np.random.default_rng(0).random((8, 32, 32, 1)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, np.array([0, 1] * 4, dtype="float32"))
    assert np.isfinite(loss) and any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_register_takes_the_name_from_the_function_and_the_description_from_its_docstring():
    reg = Registry()

    @reg.register
    def wide_net(input_shape, width=4):
        """A convolution of ``width`` filters.

        More words that are not the description.
        """
        inputs = keras.Input(shape=input_shape)
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(width, 3)(inputs))
        return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))

    @reg.register(tags=("x",))
    def plain(input_shape):
        """Plain."""
        return tiny_builder(input_shape)

    assert reg.list() == ["plain", "wide_net"] and reg.get("plain").tags == ("x",)
    assert reg.get("wide_net").description == "A convolution of ``width`` filters."
    assert reg.create("wide_net", (8, 8, 1)).count_params() == 4 * 9 + 4 + 4 + 1
    assert reg.create("wide_net", (8, 8, 1), width=16).count_params() == 16 * 9 + 16 + 16 + 1  # kwargs reach it


def test_partial_and_callable_builders_register_with_their_source_file():
    import functools

    class Builder:
        def __call__(self, input_shape):
            return tiny_builder(input_shape)

    reg = Registry()
    reg.register("partial", description="p")(functools.partial(tiny_builder))
    reg.register("object", description="o")(Builder())
    assert reg.get("partial").source == reg.get("object").source == __file__
    assert reg.create("partial", (8, 8, 1)).output_shape == (None, 1)
    with pytest.raises(RegistryError, match="with a name"):
        reg.register(functools.partial(tiny_builder))


def test_the_tool_names_the_trained_model_after_the_registry_entry():
    from benchmark.training.fit import assemble

    model, arch = assemble(architectures.get("pyramid_up").build, (32, 32, 1), "none", name="pyramid_up")
    assert model.name == "pyramid_up" and arch.name != "pyramid_up"  # the builder did not name it


def test_a_module_that_fails_to_import_is_named_and_the_others_still_listed(tmp_path, monkeypatch):
    package = tmp_path / "zz_archs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "good.py").write_text(
        "from tests.test_registry import BROKEN_REGISTRY, tiny_builder\n"
        "BROKEN_REGISTRY.register('good', description='fine')(tiny_builder)\n"
    )
    (package / "bad.py").write_text("import numpy\n\nvalue = numpy.does_not_exist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert BROKEN_REGISTRY.list() == ["good"]
    [problem] = BROKEN_REGISTRY.broken
    assert "zz_archs.bad" in problem and "bad.py: AttributeError at line 3" in problem and "does_not_exist" in problem
    with pytest.raises(RegistryError, match="bad.py: AttributeError at line 3"):
        BROKEN_REGISTRY.check()


BROKEN_REGISTRY = Registry(package="zz_archs")


def test_patterns_tags_and_order_of_select():
    reg = make_registry()
    assert reg.list() == ["plain", "res_big", "res_small"]
    assert reg.list("res_*") == ["res_big", "res_small"]
    assert reg.select("tag:big") == ["res_big"]
    assert reg.select("plain, res_*, res_big") == ["plain", "res_big", "res_small"]
    assert reg.select("all") == ["plain", "res_big", "res_small"]


def test_select_refuses_terms_that_match_nothing():
    reg = make_registry()
    with pytest.raises(RegistryError, match="'resnet50' matches no architecture. Known: plain, res_big, res_small"):
        reg.select("plain,resnet50")
    with pytest.raises(RegistryError, match="matches no architecture"):
        reg.select("tag:nope")
    with pytest.raises(RegistryError, match="unknown architecture 'x'"):
        reg.get("x")


def test_duplicate_names_from_two_files_name_both_files(tmp_path):
    reg = make_registry()
    other = tmp_path / "other.py"
    other.write_text("def build(s):\n    return None\n")
    namespace = {}
    exec(compile(other.read_text(), str(other), "exec"), namespace)
    with pytest.raises(RegistryError, match=r"registered twice: in .*test_registry.py and in .*other.py"):
        reg.register("plain")(namespace["build"])


def test_package_modules_are_imported_automatically(tmp_path, monkeypatch):
    pkg = tmp_path / "my_archs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from architectures import Registry\nREG = Registry(package='my_archs')\n")
    (pkg / "family.py").write_text(
        textwrap.dedent("""
        from my_archs import REG
        from tests.test_registry import tiny_builder
        REG.register("dropped_in", tags=("new",), description="added by one file")(tiny_builder)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_archs

    assert my_archs.REG.list() == ["dropped_in"]
    assert my_archs.REG.get("dropped_in").tags == ("new",)


def test_arch_module_file_and_its_syntax_error(tmp_path):
    good = tmp_path / "extra.py"
    good.write_text(
        textwrap.dedent("""
        from architectures import register
        from tests.test_registry import tiny_builder
        register("zz_from_file", description="kept outside the package")(tiny_builder)
    """)
    )
    architectures.load_file(good)
    assert architectures.get("zz_from_file").description == "kept outside the package"
    reg = make_registry()
    bad = tmp_path / "broken.py"
    bad.write_text("x = 1\ndef build(:\n")
    with pytest.raises(RegistryError, match=r"broken.py: syntax error at line 2"):
        reg.load_file(bad)
    with pytest.raises(RegistryError, match="no such file"):
        reg.load_file(tmp_path / "missing.py")


@pytest.mark.slow
@pytest.mark.realdata
def test_a_file_dropped_into_architectures_is_listed_and_runs(tmp_path):
    dropped = ROOT / "architectures" / "zz_pytest_dropin.py"
    dropped.write_text(
        textwrap.dedent("""
        import keras
        from architectures import register

        @register("zz_dropin", tags=("test",), description="Dropped in by the test suite.")
        def build(input_shape):
            inputs = keras.Input(shape=input_shape)
            x = keras.layers.Flatten()(inputs)
            return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    """)
    )
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 20, "PNEUMONIA": 20})
    cli = [sys.executable, "-m", "benchmark.cli"]
    run_args = ["run", "--archs", "zz_dropin", "--data", str(data), "--out", str(tmp_path / "out"), "--folds", "2"]
    run_args += ["--epochs", "1", "--image-size", "16", "--cache-dir", str(tmp_path / "cache")]
    try:
        listed = subprocess.run([*cli, "list", "tag:test"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        ran = subprocess.run([*cli, *run_args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        dropped.unlink()
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("zz_dropin"))
    assert "Dropped in by the test suite." in row
    assert "3,137" in row  # 56×56 inputs + 1 bias at the default image size
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert (tmp_path / "out" / "zz_dropin" / "fold-1" / "metrics.json").is_file()


def test_the_readme_example_architecture_file_works(tmp_path):
    readme = (ROOT / "README.md").read_text()
    start = readme.index("# architectures/tiny_residual.py")
    example = tmp_path / "tiny_residual.py"
    example.write_text(readme[start : readme.index("```", start)])
    architectures.load_file(example)
    model = architectures.create("tiny_residual", (32, 32, 1))
    assert model.output_shape == (None, 1)
    assert architectures.get("tiny_residual").tags == ("residual",)


def test_installed_plugins_register_through_entry_points(tmp_path, monkeypatch):
    (tmp_path / "plugin_archs.py").write_text(
        "from tests.test_registry import PLUGIN_REGISTRY, tiny_builder\n"
        "PLUGIN_REGISTRY.register('from_plugin', description='installed elsewhere')(tiny_builder)\n"
    )
    dist = tmp_path / "plugin_archs-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-archs\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[benchmark.test_plugins]\nplugin = plugin_archs\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert PLUGIN_REGISTRY.list() == ["from_plugin"]


PLUGIN_REGISTRY = Registry(entry_point_group="benchmark.test_plugins")


@pytest.mark.slow
def test_the_issue7_candidates_file_builds_the_measured_models():
    """docs/results.md's rows are rerun with this file: its models must keep the measured sizes."""
    cli = [sys.executable, "-m", "benchmark.cli", "list", "pyramid_bn_gap,tag:issue7"]
    listed = subprocess.run(
        [*cli, "--arch-module", str(ROOT / "docs" / "experiments" / "issue7.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    params = {}
    for line in listed.stdout.splitlines():
        if count := re.search(r"\s(\d{1,3}(?:,\d{3})+)\s", line):
            params[line.split()[0]] = count.group(1)
    expected = {"c_resnet": "308,817", "c_mobilenet": "411,201", "c_pyramid_gap": "97,281"}
    expected |= {name: "98,001" for name in ("pyramid_bn_gap", "c_pyramid_bn_gap", "c_pyramid_bn_gap_std")}
    assert {name: params.get(name) for name in expected} == expected
