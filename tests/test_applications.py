"""Keras's own applications as candidates (issue 22, first part): ``keras:NAME`` in ``--archs``, each
family's pixel scaling inside the model, the minimum input size before training, ``benchmark list --keras``,
and one application through a real run."""

import hashlib
import json

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import architectures
from architectures import _applications
from benchmark.cli import main
from benchmark.data.images import discover, load_images
from benchmark.training.fit import load_fold_model
from tests.conftest import link_kaggle_subset, real_files


def test_keras_names_and_patterns_are_candidates_beside_the_registry_and_not_in_all():
    assert architectures.select("keras:EfficientNetV2B*,baseline") == [
        *(f"keras:EfficientNetV2B{i}" for i in range(4)),
        "baseline",
    ]
    assert "keras:DenseNet121" in architectures.select("keras:*")
    assert not [n for n in architectures.select("all") if n.startswith("keras:")]  # the main job is unchanged
    spec = architectures.get("keras:DenseNet121")
    assert spec.tags == ("keras",) and spec.description.startswith("keras.applications.DenseNet121 (Keras 3.")
    with pytest.raises(architectures.RegistryError, match="matches no Keras application"):
        architectures.select("keras:DenseNet12")
    with pytest.raises(architectures.RegistryError, match="unknown Keras application 'Resnet50'"):
        architectures.get("keras:Resnet50")


# One application per kind of preprocess_input; each module's own function is the reference.
FAMILIES = [
    ("EfficientNetB0", keras.applications.efficientnet.preprocess_input),  # scales inside the model
    ("DenseNet121", keras.applications.densenet.preprocess_input),  # "torch"
    ("MobileNetV2", keras.applications.mobilenet_v2.preprocess_input),  # "tf"
    ("ResNet50", keras.applications.resnet.preprocess_input),  # "caffe": BGR, ImageNet mean
]


@pytest.mark.realdata
@pytest.mark.parametrize(("application", "preprocess_input"), FAMILIES)
def test_each_family_gets_its_own_pixel_scaling(application, preprocess_input):
    rgb = [
        np.asarray(Image.open(f).convert("RGB").resize((32, 32)), np.float32) for f in real_files("train", "NORMAL", 2)
    ]
    rgb[1] = rgb[1] * np.array([1.0, 0.8, 0.6], np.float32)  # channels that differ, so an RGB/BGR mix-up shows
    pixels = np.stack(rgb)  # 0–255
    scaled = keras.ops.convert_to_numpy(_applications.scaling(application, 3)(pixels / 255.0))
    expected = pixels if application == "EfficientNetB0" else preprocess_input(pixels.copy())
    np.testing.assert_allclose(scaled, expected, rtol=1e-5, atol=1e-3)

    grey = pixels[..., :1]  # one channel: the per-channel constants averaged
    one = keras.ops.convert_to_numpy(_applications.scaling(application, 1)(grey / 255.0))
    channel_mean = preprocess_input(np.repeat(grey, 3, axis=-1).copy()).mean(axis=-1, keepdims=True)
    if application == "DenseNet121":  # (g − mean) / std, with the means of mean and std
        channel_mean = (grey / 255.0 - np.mean(_applications.TORCH_MEAN)) / np.mean(_applications.TORCH_STD)
    np.testing.assert_allclose(one, grey if application == "EfficientNetB0" else channel_mean, rtol=1e-5, atol=1e-3)


def test_a_size_below_the_familys_minimum_is_one_paragraph_before_anything_is_written(tmp_path, capsys):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 12, "PNEUMONIA": 12}, wrapper=False)
    args = ["run", "--data", str(data), "--out", str(tmp_path / "out"), "--archs", "baseline,keras:Xception"]
    assert main([*args, "--image-size", "32", "--cache-dir", str(tmp_path / "cache")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err == (
        "error: --archs keras:Xception: Input size must be at least 71x71; Received: input_shape=(32, 32, 1) "
        "(from --image-size 32); give --image-size 71 or more."
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_list_keras_names_the_applications_with_parameters_and_flops(capsys):
    assert main(["list", "--keras", "DenseNet12*", "--image-size", "32"]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("keras:")]
    name, tags, params, mflops, *_ = row.split()
    assert (name, tags) == ("keras:DenseNet121", "keras")
    model = architectures.get("keras:DenseNet121").build((32, 32, 1))
    assert params == f"{model.count_params():,}" and float(mflops) > 50


@pytest.mark.slow
@pytest.mark.realdata
def test_an_application_runs_through_the_folds_and_its_saved_models_carry_the_scaling(tmp_path):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 12, "PNEUMONIA": 12}, test_per_class=4, wrapper=False)
    out = tmp_path / "out"
    args = ["run", "--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--archs",
            "keras:MobileNetV3Small,baseline", "--folds", "2", "--epochs", "1", "--image-size", "32", "-q"]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    entry = next(e for e in results["architectures"] if e["name"] == "keras:MobileNetV3Small")
    assert entry["status"] == "ok" and entry["description"].startswith("keras.applications.MobileNetV3Small")
    test = load_images(data, discover(data).test, 32, 1, tmp_path / "cache")
    for fold in range(2):
        model = load_fold_model(out / "keras_MobileNetV3Small" / f"fold-{fold}" / "model.keras")
        assert "pixels_0_255" in [layer.name for layer in model.layers[-2].layers]  # the family's scaling, saved
        saved = pd.read_csv(out / "keras_MobileNetV3Small" / f"fold-{fold}" / "test_predictions.csv")
        np.testing.assert_allclose(model.predict(test.pixels, verbose=0)[:, 0], saved.probability, atol=1e-5)
        record = json.loads((out / "keras_MobileNetV3Small" / f"fold-{fold}" / "metrics.json").read_text())
        assert record["phases"] == {"train": 1}  # from scratch: the registry's recipe
    report = " ".join((out / "report.md").read_text().split())
    assert "| keras:MobileNetV3Small | Keras application | random (from scratch) |" in report
    assert "| baseline | registry | random (from scratch) |" in report


def write_keras_weights(folder, application: str, shape=(32, 32, 3), seed: int = 3) -> keras.Model:
    """A backbone with seeded random weights, saved in ``folder`` under Keras's own file name and format
    (what `weights="imagenet"` would download): the test's stand-in for ImageNet weights, offline."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(seed)
    source = getattr(keras.applications, application)(include_top=False, weights=None, input_shape=shape)
    name, _ = _applications.weight_file_name(application, shape)
    with h5py.File(folder / name, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    return source


def backbone_weights(model: keras.Model) -> list[np.ndarray]:
    """The weights of the backbone's layers (not this tool's scaling, replication or head)."""
    own = ("grey_to_rgb", "pixels_", "head")
    layers = [layer for layer in model.layers if layer.weights and not layer.name.startswith(own)]
    return [w for layer in layers for w in layer.get_weights()]


def test_greyscale_reaches_a_pretrained_backbone_as_three_channels_with_its_familys_scaling(tmp_path):
    source = write_keras_weights(tmp_path, "MobileNetV3Small")
    model = architectures.get("keras:MobileNetV3Small").build((32, 32, 1), weights=str(tmp_path))
    assert [layer.name for layer in model.layers[1:3]] == ["grey_to_rgb", "pixels_0_255"]
    grey = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
    rgb = keras.ops.convert_to_numpy(keras.Model(model.input, model.layers[2].output)(grey))
    np.testing.assert_allclose(rgb, np.repeat(grey, 3, axis=-1) * 255, rtol=1e-6)
    mine, theirs = backbone_weights(model), [w for layer in source.layers for w in layer.get_weights()]
    assert len(mine) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True))


def test_a_missing_weight_file_is_one_paragraph_naming_it_before_anything_is_written(tmp_path, capsys):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 12, "PNEUMONIA": 12}, wrapper=False)
    (tmp_path / "weights").mkdir()
    args = ["run", "--data", str(data), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--archs", "keras:MobileNetV3Small", "--image-size", "32",
            "--weights", str(tmp_path / "weights")]  # fmt: skip
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    name, origin = _applications.weight_file_name("MobileNetV3Small", (32, 32, 3))
    assert err.startswith(f"error: --weights {tmp_path / 'weights'}: {tmp_path / 'weights' / name} is missing")
    assert f"Download {origin}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert main([*args[:-1], str(tmp_path / "nowhere")]) == 2
    assert "--weights" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.realdata
def test_fold_training_starts_from_the_weight_files_weights(tmp_path, monkeypatch):
    data = link_kaggle_subset(tmp_path / "data", {"NORMAL": 12, "PNEUMONIA": 12}, wrapper=False)
    (tmp_path / "weights").mkdir()
    source = write_keras_weights(tmp_path / "weights", "MobileNetV3Small")
    expected = [w for layer in source.layers for w in layer.get_weights()]
    seen = []
    real_fit = keras.Model.fit

    def fit(self, *args, **kwargs):  # the weights the fold's training starts from
        arch = [layer for layer in self.layers if isinstance(layer, keras.Model) and layer.name != "augmentation"][-1]
        seen.append(backbone_weights(arch))
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    out = tmp_path / "out"
    args = ["run", "--data", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--archs",
            "keras:MobileNetV3Small", "--folds", "2", "--epochs", "2", "--warmup-epochs", "1", "--image-size", "32",
            "--weights", str(tmp_path / "weights"), "--gradcam-archs", "none", "-q"]  # fmt: skip
    assert main(args) == 0
    assert len(seen) == 4  # per fold: the warm-up's fit, then the fine-tuning's
    for weights in seen:  # the file's weights, and still after the head's warm-up
        assert all(np.array_equal(a, b) for a, b in zip(weights, expected, strict=True))
    for fold in range(2):
        record = json.loads((out / "keras_MobileNetV3Small" / f"fold-{fold}" / "metrics.json").read_text())
        assert record["phases"] == {"warmup": 1, "finetune": 1}
    config = json.loads((out / "config.json").read_text())
    path = tmp_path / "weights" / _applications.weight_file_name("MobileNetV3Small", (32, 32, 3))[0]
    assert config["weights"] == {
        "keras:MobileNetV3Small": {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    }
    report = " ".join((out / "report.md").read_text().split())
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert (
        f"| keras:MobileNetV3Small | Keras application | {path.name} (SHA-256 {sha[:12]}…); head warm-up 1 epochs"
        in report
    )


def layer_kinds(arch: keras.Model) -> dict[str, list]:
    """The backbone's batch-norm layers, its other layers with weights, and the output layer."""
    backbone = [layer for layer in arch.layers[:-1] if layer.weights and not layer.name.startswith("pixels_")]
    norms = [layer for layer in backbone if isinstance(layer, keras.layers.BatchNormalization)]
    return {"batchnorm": norms, "backbone": [x for x in backbone if x not in norms], "head": arch.layers[-1:]}


def weights_by_kind(arch: keras.Model) -> dict[str, list[np.ndarray]]:
    """The values of :func:`layer_kinds`' weights (batch norm's moving statistics included)."""
    return {k: [w for layer in v for w in layer.get_weights()] for k, v in layer_kinds(arch).items()}


@pytest.mark.realdata
def test_pretrained_weights_warm_the_head_up_then_fine_tune_with_batchnorm_frozen(tmp_path, monkeypatch):
    """--warmup-epochs: the backbone unchanged while the head warms up; then every weight but the batch-norm
    layers' changes, at a tenth of the learning rate; early stopping spans both phases."""
    from benchmark.data.splits import NestedStratifiedKFold
    from benchmark.training.fit import TrainSettings, train_fold
    from tests.test_training import real_images

    write_keras_weights(tmp_path, "MobileNetV3Small")
    epochs, trained = [], []  # per epoch: (phase's starting learning rate, weights at its end); per phase
    real_fit = keras.Model.fit

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            arch = [layer for layer in self.model.layers if isinstance(layer, keras.Model)][-1]
            epochs.append((self.lr, weights_by_kind(arch))) if not epochs else None
            trained.append({w.path for w in self.model.trainable_weights})

        def on_epoch_end(self, epoch, logs=None):
            arch = [layer for layer in self.model.layers if isinstance(layer, keras.Model)][-1]
            epochs.append((self.lr, weights_by_kind(arch)))

    def fit(self, *args, callbacks=(), **kwargs):
        return real_fit(self, *args, callbacks=[*callbacks, Record()], **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)
    images = real_images(per_class=16)
    fold = NestedStratifiedKFold(2, 0.25, 0).split(images.labels)[0]
    settings = TrainSettings(epochs=3, batch_size=8, lr=1e-3, lr_decay_epochs=100, patience=5, augment="none",
                             weights=str(tmp_path), warmup_epochs=1)  # fmt: skip
    result = train_fold(architectures.get("keras:MobileNetV3Small").build, images, fold, settings, seed=0)
    assert result.phases == {"warmup": 1, "finetune": 2} and len(result.history["val_loss"]) == 3
    (_, start), (warm_lr, warm), (tune_lr, tuned), _ = epochs
    assert warm_lr == pytest.approx(1e-3) and tune_lr == pytest.approx(1e-4)

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    assert same(warm["backbone"], start["backbone"]) and same(warm["batchnorm"], start["batchnorm"])
    assert not same(warm["head"], start["head"])
    assert same(tuned["batchnorm"], warm["batchnorm"])  # scale, offset and moving statistics
    changed = [not np.array_equal(x, y) for x, y in zip(tuned["backbone"], warm["backbone"], strict=True)]
    assert sum(changed) > len(changed) / 2  # the rest saturated: the stand-in weights are random
    arch = architectures.get("keras:MobileNetV3Small").build((32, 32, 1))
    paths = {kind: {w.path for layer in layers for w in layer.weights} for kind, layers in layer_kinds(arch).items()}
    assert trained[0] == paths["head"]
    assert trained[1] == paths["head"] | paths["backbone"]  # all but the batch-norm layers


def test_from_scratch_the_recipe_is_one_phase():
    from benchmark.training.fit import TrainSettings, phases

    settings = TrainSettings(epochs=4, batch_size=8, lr=1e-3, lr_decay_epochs=10, patience=5, augment="none",
                             weights="imagenet", warmup_epochs=2)  # fmt: skip
    assert phases(settings, from_pretrained=False) == [("train", 4)]
    assert phases(settings, from_pretrained=True) == [("warmup", 2), ("finetune", 4)]
    assert phases(TrainSettings(**{**vars(settings), "warmup_epochs": 0}), True) == [("train", 4)]
