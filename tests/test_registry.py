import subprocess
import sys
import textwrap

import keras
import pytest

import architectures
from architectures import Registry, RegistryError
from tests.conftest import ROOT

REQUIRED = {
    "baseline",
    "pyramid_up",
    "pyramid_down",
    "baseline_dropout",
    "baseline_batchnorm",
    "baseline_bn_dropout",
    "separable",
}


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


def test_builtin_registry_has_the_required_architectures_with_descriptions():
    names = set(architectures.list_architectures())
    assert names >= REQUIRED
    assert all(architectures.get(n).description for n in names)
    assert architectures.list_architectures("pyramid_*") == ["pyramid_down", "pyramid_up"]


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_builtin_builds_a_one_unit_sigmoid_model(name):
    model = architectures.create(name, (32, 32, 1))
    assert model.output_shape == (None, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"


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


def test_a_file_dropped_into_architectures_is_listed(tmp_path):
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
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmark.cli", "list", "tag:test"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        dropped.unlink()
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("zz_dropin"))
    assert "Dropped in by the test suite." in row
    assert "4,097" in row  # 64×64 inputs + 1 bias at the default image size
