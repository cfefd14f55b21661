import keras
import numpy as np
import pytest
from keras import layers

from benchmark.data import Images
from benchmark.splits import NestedStratifiedKFold
from benchmark.training import (
    ArchitectureError,
    TrainSettings,
    assemble,
    augmentation,
    class_weights,
    initial_bias,
    set_output_bias,
    train_fold,
)

SETTINGS = TrainSettings(epochs=3, batch_size=16, lr=1e-3, lr_decay_epochs=10, patience=2, augment="none")


def small_cnn(input_shape):
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(4, 3, activation="relu")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))


def bright_or_dark(n_neg=30, n_pos=60, size=12):
    """Negatives dark, positives bright: a problem any CNN learns in a few epochs."""
    rng = np.random.default_rng(0)
    labels = np.array([0] * n_neg + [1] * n_pos, dtype=np.int8)
    pixels = (rng.integers(0, 60, (len(labels), size, size, 1)) + labels[:, None, None, None].astype(int) * 150).astype(
        np.uint8
    )
    return Images(pixels=pixels, labels=labels, paths=tuple(f"{i}.png" for i in range(len(labels))))


def test_class_weights_and_bias_from_counts():
    labels = np.array([0] * 1000 + [1] * 3000)
    assert class_weights(labels) == {0: 2.0, 1: pytest.approx(2 / 3)}
    assert initial_bias(labels) == pytest.approx(np.log(3))


def test_assemble_reports_broken_builders():
    def raises(shape):
        raise RuntimeError("boom")

    def two_units(shape):
        inputs = keras.Input(shape=shape)
        return keras.Model(inputs, layers.Dense(2)(layers.Flatten()(inputs)))

    with pytest.raises(ArchitectureError, match="build failed: RuntimeError: boom"):
        assemble(raises, (8, 8, 1), augment="none")
    with pytest.raises(ArchitectureError, match=r"output shape \(None, 2\), expected \(None, 1\)"):
        assemble(two_units, (8, 8, 1), augment="none")
    with pytest.raises(ArchitectureError, match="expected a keras.Model"):
        assemble(lambda shape: "not a model", (8, 8, 1), augment="none")


def test_output_bias_is_set_on_the_last_unit():
    model = small_cnn((8, 8, 1))
    assert set_output_bias(model, 1.25)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.layers[-1].bias), [1.25])
    inputs = keras.Input(shape=(8, 8, 1))
    no_bias = keras.Model(inputs, layers.Dense(1, use_bias=False, activation="sigmoid")(layers.Flatten()(inputs)))
    assert not set_output_bias(no_bias, 1.0)


def test_train_fold_learns_and_uses_the_fit_part_only(tmp_path):
    images = bright_or_dark()
    fold = NestedStratifiedKFold(3, 0.2, 0).split(images.labels)[0]
    epochs_seen = []
    settings = TrainSettings(epochs=10, batch_size=16, lr=1e-2, lr_decay_epochs=10, patience=10, augment="light")
    result = train_fold(
        small_cnn,
        images,
        fold,
        settings,
        seed=0,
        model_path=tmp_path / "model.keras",
        report=lambda e, logs: epochs_seen.append(e),
    )
    fit_labels = images.labels[fold.train]
    assert result.class_weight == class_weights(fit_labels)
    assert result.initial_bias == pytest.approx(np.log(fit_labels.sum() / (len(fit_labels) - fit_labels.sum())))
    assert result.probabilities.shape == (len(fold.score),)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(images.labels[fold.score], result.probabilities) > 0.95
    assert epochs_seen == list(range(1, len(result.history["val_loss"]) + 1))
    assert set(result.history) >= {"loss", "val_loss"}
    restored = keras.models.load_model(tmp_path / "model.keras")
    again = restored.predict(images.pixels[fold.score], verbose=0).reshape(-1)
    np.testing.assert_allclose(again, result.probabilities, atol=1e-5)


def test_label_smoothing_keeps_probabilities_off_0_and_1():
    images = bright_or_dark()
    fold = NestedStratifiedKFold(3, 0.2, 0).split(images.labels)[0]

    def most_confident(smoothing):
        settings = TrainSettings(20, 16, 1e-2, 100, 20, "none", label_smoothing=smoothing)
        return train_fold(small_cnn, images, fold, settings, seed=0).probabilities.max()

    assert most_confident(0.0) > 0.9
    assert most_confident(0.4) < 0.82  # the positives' target is 0.8: the loss's minimum lies there


def test_strong_augmentation_moves_pixels_further_than_light():
    keras.utils.set_random_seed(0)
    ramp = np.tile(np.linspace(0, 1, 32, dtype="float32"), (32, 1))
    batch = np.repeat(ramp[None, :, :, None], 64, axis=0)

    def change(level):
        out = keras.ops.convert_to_numpy(augmentation(level)(batch, training=True))
        return float(np.abs(out - batch).mean())

    assert [type(layer).__name__ for layer in augmentation("strong").layers][-1] == "RandomBrightness"
    assert change("strong") > 1.5 * change("light") > 0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(augmentation("strong")(batch, training=False)), batch)


def test_nan_loss_marks_the_architecture_failed():
    def explodes(shape):
        inputs = keras.Input(shape=shape)
        x = layers.Flatten()(inputs)
        x = layers.Lambda(lambda t: t * float("nan"))(x)
        return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))

    images = bright_or_dark()
    fold = NestedStratifiedKFold(3, 0.2, 0).split(images.labels)[0]
    with pytest.raises(ArchitectureError, match="loss became NaN at epoch 1"):
        train_fold(explodes, images, fold, SETTINGS, seed=0)


def test_same_seed_gives_the_same_model():
    images = bright_or_dark()
    fold = NestedStratifiedKFold(3, 0.2, 0).split(images.labels)[1]
    a = train_fold(small_cnn, images, fold, SETTINGS, seed=3).probabilities
    b = train_fold(small_cnn, images, fold, SETTINGS, seed=3).probabilities
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_mixed_precision_keeps_probabilities_in_float32():
    from benchmark import backend

    try:
        device = backend.setup(mixed_precision=True)
        assert device.mixed_precision and keras.mixed_precision.global_policy().name == "mixed_float16"
        model, arch = assemble(small_cnn, (8, 8, 1), augment="light")
        assert arch.layers[1].compute_dtype == "float16"  # the convolution computes in half precision
        assert model.layers[-1].compute_dtype == "float32"
        out = model(np.zeros((2, 8, 8, 1), dtype="uint8"))
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
    finally:
        backend.setup(mixed_precision=False)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_strategy_selection_on_a_cpu_machine():
    from benchmark import UsageError, backend

    device = backend.setup(strategy="auto")
    assert device.gpus == 0 and device.strategy == "none" and device.backend == keras.backend.backend()
    with pytest.raises(UsageError, match="--strategy bogus"):
        backend.setup(strategy="bogus")
