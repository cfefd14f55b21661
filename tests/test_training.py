import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers
from sklearn.metrics import roc_auc_score

from benchmark.data.images import Images
from benchmark.data.splits import Fold, NestedStratifiedKFold
from benchmark.training import fit as training
from benchmark.training.fit import (
    ArchitectureError,
    DeviceBatches,
    TrainSettings,
    assemble,
    augmentation,
    class_weights,
    initial_bias,
    set_output_bias,
    train_fold,
)

ROOT = Path(__file__).resolve().parents[1]

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


def real_images(per_class: int = 30, size: int = 32) -> Images:
    """The first real chest X-rays of each class, decoded at ``size`` px (NORMAL 0, PNEUMONIA 1)."""
    from benchmark.data.images import decode
    from tests.conftest import real_files

    files = [
        (f, label) for label, cls in enumerate(("NORMAL", "PNEUMONIA")) for f in real_files("train", cls, per_class)
    ]
    pixels = np.stack([decode(f, size) for f, _ in files])
    return Images(pixels, np.array([label for _, label in files], np.int8), tuple(str(f) for f, _ in files))


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


@pytest.mark.slow
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
    assert roc_auc_score(images.labels[fold.score], result.probabilities) > 0.95
    assert epochs_seen == list(range(1, len(result.history["val_loss"]) + 1))
    assert set(result.history) >= {"loss", "val_loss"}
    restored = keras.models.load_model(tmp_path / "model.keras")
    again = restored.predict(images.pixels[fold.score], verbose=0).reshape(-1)
    np.testing.assert_allclose(again, result.probabilities, atol=1e-5)


@pytest.mark.slow
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


@pytest.mark.realdata
def test_an_output_not_finite_before_training_is_blamed_on_the_architecture_not_the_learning_rate():
    def explodes(shape):
        inputs = keras.Input(shape=shape)
        x = layers.Flatten()(inputs)
        x = layers.Lambda(lambda t: t * float("nan"))(x)
        return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))

    images = real_images()
    fold = NestedStratifiedKFold(3, 0.2, 0).split(images.labels)[0]
    epochs = []
    with pytest.raises(ArchitectureError) as failed:
        train_fold(explodes, images, fold, SETTINGS, seed=0, report=lambda e, logs: epochs.append(e))
    message = str(failed.value)
    assert message.startswith(
        f"the untrained model's output is not finite (NaN or infinity for {len(fold.train)} of {len(fold.train)} "
        "fit images, before any training step): the architecture itself computes it, so the learning rate is not "
        "the cause"
    )
    assert "--lr" not in message and epochs == []  # failed before its first epoch


@pytest.mark.slow
@pytest.mark.realdata
def test_a_loss_that_turns_nan_from_a_finite_start_names_the_learning_rate():
    images = real_images()
    fold = NestedStratifiedKFold(3, 0.2, 0).split(images.labels)[0]
    settings = TrainSettings(epochs=3, batch_size=16, lr=1e20, lr_decay_epochs=10, patience=5, augment="none")
    with pytest.raises(ArchitectureError) as failed:
        train_fold(small_cnn, images, fold, settings, seed=0)
    assert str(failed.value) == (
        "training loss became NaN at epoch 1, though the untrained model's output was finite: the updates "
        "diverged; lower --lr"
    )


@pytest.mark.slow
def test_same_seed_gives_the_same_model():
    images = bright_or_dark()
    fold = NestedStratifiedKFold(3, 0.2, 0).split(images.labels)[1]
    a = train_fold(small_cnn, images, fold, SETTINGS, seed=3).probabilities
    b = train_fold(small_cnn, images, fold, SETTINGS, seed=3).probabilities
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_mixed_precision_keeps_probabilities_in_float32():
    from benchmark.training import backend

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


def test_strategy_selection():
    from benchmark import UsageError
    from benchmark.training import backend

    device = backend.setup(strategy="auto")
    assert device.backend == keras.backend.backend()
    assert device.strategy == ("mirrored" if device.gpus > 1 else "none")  # one GPU or none: no data parallelism
    assert backend.setup(strategy="none").strategy == "none"
    with pytest.raises(UsageError, match="--strategy bogus"):
        backend.setup(strategy="bogus")


def test_device_batches_show_each_fit_image_once_per_epoch_with_its_class_weight():
    labels = np.array([0] * 7 + [1] * 30, dtype="float32")
    pixels = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1)  # each image's pixel is its index
    weights = class_weights(labels.astype(int))
    batches = DeviceBatches(pixels, labels, weights, batch_size=8)
    stream = iter(batches)
    epochs = [[next(stream) for _ in range(batches.steps)] for _ in range(2)]
    assert batches.steps == 5
    orders = []
    for epoch in epochs:
        x, y, w = (np.concatenate([keras.ops.convert_to_numpy(b[k]) for b in epoch]) for k in range(3))
        assert [len(b[0]) for b in epoch] == [8, 8, 8, 8, 5]
        assert sorted(x.reshape(-1).tolist()) == list(range(len(labels)))  # every image once
        np.testing.assert_array_equal(y, labels[x.reshape(-1)])
        np.testing.assert_allclose(w, [weights[int(c)] for c in y])
        orders.append(x.reshape(-1).tolist())
    assert orders[0] != orders[1]  # reshuffled every epoch
    assert batches.seconds > 0


class CountCalls(layers.Layer):
    """Counts how often its Python code runs: once per step eagerly, once per trace when compiled."""

    calls = 0

    def call(self, x):
        CountCalls.calls += 1
        return x


def counting_cnn(input_shape):
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(4, 3, activation="relu")(CountCalls()(inputs))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))


def check_jax_train_step_is_compiled():
    """Under JAX the training step is traced a few times, not run in Python at every step; batches
    gathered on the device (as on a GPU) train as well as Keras's own pipeline."""
    images = bright_or_dark(n_neg=100, n_pos=200)
    fold = NestedStratifiedKFold(3, 0.2, 0).split(images.labels)[0]
    settings = TrainSettings(epochs=3, batch_size=16, lr=1e-2, lr_decay_epochs=10, patience=5, augment="light")
    CountCalls.calls = 0
    result = train_fold(counting_cnn, images, fold, settings, seed=0)
    steps = 3 * -(-len(fold.train) // 16)
    assert result.jit_compile and steps >= 30
    assert CountCalls.calls <= 12, f"the model's Python code ran {CountCalls.calls} times for {steps} steps"
    assert len(result.epoch_seconds) == 3 and result.epoch_seconds[0] > result.epoch_seconds[-1]  # compilation
    training.backend.feeds_from_device = lambda: True
    fed = train_fold(counting_cnn, images, fold, settings, seed=0)
    assert fed.jit_compile and fed.input_seconds > 0
    # Fed from the device, batches come in another, equally random order; images paired with the wrong
    # labels would score about 0.5.
    assert roc_auc_score(images.labels[fold.score], fed.probabilities) > 0.95


def check_jax_compiled_equals_eager_on_real_images():
    """Compiled training gives the numbers of the eager run it replaced, on real X-rays."""
    import architectures
    from benchmark.data.images import discover, load_images
    from tests.conftest import REAL_224

    dataset = discover(REAL_224)
    chosen = np.r_[0:120, 1341:1521]  # 120 NORMAL, 180 PNEUMONIA
    loaded = load_images(REAL_224, dataset.train, 32, cache_dir=os.environ["CACHE"], log=lambda m: None)
    images = Images(np.asarray(loaded.pixels[chosen]), loaded.labels[chosen], tuple(loaded.paths[i] for i in chosen))
    fold = NestedStratifiedKFold(3, 0.1, 0).split(images.labels)[0]
    settings = TrainSettings(epochs=2, batch_size=32, lr=1e-3, lr_decay_epochs=10, patience=5, augment="light")
    build = architectures.get("baseline").build
    compiled = train_fold(build, images, fold, settings, seed=1)
    training.JIT_COMPILE["jax"] = False  # the step as it ran before compilation was turned on
    eager = train_fold(build, images, fold, settings, seed=1)
    assert compiled.jit_compile and not eager.jit_compile
    np.testing.assert_allclose(compiled.probabilities, eager.probabilities, atol=1e-4)
    np.testing.assert_allclose(compiled.history["loss"], eager.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(compiled.history["val_loss"], eager.history["val_loss"], rtol=1e-4)
    assert roc_auc_score(images.labels[fold.score], compiled.probabilities) > 0.8  # it learned


@pytest.mark.slow
@pytest.mark.realdata
def test_under_jax(tmp_path):
    """The checks above, and nested models' batch-norm re-estimation, in one process whose Keras runs on JAX."""
    checks = (  # first the one that leaves training's settings as they are
        "check_nested_models_train_with_batchnorm_re_estimated, check_jax_train_step_is_compiled, "
        "check_jax_compiled_equals_eager_on_real_images"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"from tests.test_training import {checks}; {checks.replace(',', '();')}()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": "jax", "CACHE": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]


class XlaRuntimeError(Exception):
    """Stands in for JAX's error: the same name and message."""


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.cuda.OutOfMemoryError: the same name and message."""


@pytest.mark.slow
@pytest.mark.parametrize(
    "error",
    [
        XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 2147483648 bytes."),
        OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB (GPU 0; 79.11 GiB total capacity)"),
        ValueError("shapes (3,) and (4,) not aligned"),  # not a memory error: not retried
    ],
)
def test_out_of_memory_of_each_backend_is_retried_once_with_half_the_batch(error, monkeypatch):
    from benchmark.training.execution import FoldTask, run_fold

    real, batch_sizes = training.train_fold, []

    def first_attempt_fails(build, images, fold, settings, *args, **kwargs):
        batch_sizes.append(settings.batch_size)
        if len(batch_sizes) == 1:
            raise error
        return real(build, images, fold, settings, *args, **kwargs)

    monkeypatch.setattr(training, "train_fold", first_attempt_fails)
    images = bright_or_dark(size=16)
    fold = NestedStratifiedKFold(3, 0.2, 0).split(images.labels)[0]
    settings = TrainSettings(epochs=1, batch_size=32, lr=1e-3, lr_decay_epochs=10, patience=2, augment="none")
    out = run_fold(FoldTask("baseline", 0, fold, 0, settings, save_model=False), images)
    if isinstance(error, ValueError):
        assert batch_sizes == [32] and out.error == "ValueError: shapes (3,) and (4,) not aligned"
        return
    assert out.error is None and batch_sizes == [32, 16] and out.record["batch_size"] == 16
    assert out.log == ("baseline fold 1: out of memory at batch size 32; retrying once with 16",)


@pytest.mark.slow
def test_early_stopping_watches_the_inner_split_and_keeps_its_best_weights(tmp_path):
    """With the inner split's labels flipped, its loss rises as the model learns: training must stop
    ``patience`` epochs after the inner split's best epoch, and the saved model must be that epoch's."""
    images = bright_or_dark(n_neg=60, n_pos=60)
    fold = NestedStratifiedKFold(3, 0.2, 0).split(images.labels)[0]
    labels = images.labels.copy()
    labels[fold.val] = 1 - labels[fold.val]
    flipped = Images(images.pixels, labels, images.paths)
    settings = TrainSettings(epochs=12, batch_size=16, lr=1e-2, lr_decay_epochs=100, patience=2, augment="none")
    result = train_fold(small_cnn, flipped, fold, settings, seed=0, model_path=tmp_path / "model.keras")
    val_loss = result.history["val_loss"]
    best = int(np.argmin(val_loss))
    assert len(val_loss) == best + 1 + settings.patience < settings.epochs  # stopped early, on the inner split
    model = training.load_fold_model(tmp_path / "model.keras")
    p = np.clip(model.predict(images.pixels[fold.val], verbose=0).reshape(-1), 1e-7, 1 - 1e-7)
    y = labels[fold.val]
    saved_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert saved_loss == pytest.approx(val_loss[best], rel=1e-4) and saved_loss < val_loss[-1]
    scored = model.predict(images.pixels[fold.score], verbose=0).reshape(-1)
    np.testing.assert_allclose(scored, result.probabilities, atol=1e-6)  # the score fold saw the best weights


def two_batchnorm_cnn(input_shape):
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(4, 3, padding="same")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(3, 3, padding="same")(x)
    x = layers.BatchNormalization(name="bn2")(x)
    x = layers.GlobalAveragePooling2D()(layers.Activation("relu")(x))
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))


def test_an_architecture_without_trainable_batch_norm_is_not_run_to_re_estimate_it():
    """No statistics to set, no pass over the 512 images: it held pyramid_down's widest activations (1.7 GiB
    at 56 px) every epoch. A frozen batch-norm layer (a pretrained backbone while fine-tuned) counts as none."""
    images = bright_or_dark(size=12).pixels
    model, _ = assemble(counting_cnn, (12, 12, 1), augment="light")
    CountCalls.calls = 0
    assert training.recalibrate_batchnorm(model, images) == 0 and CountCalls.calls == 0

    def counting_batchnorm_cnn(input_shape):
        inner = two_batchnorm_cnn(input_shape)
        inputs = keras.Input(shape=input_shape)
        return keras.Model(inputs, inner(CountCalls()(inputs)))

    model, arch = assemble(counting_batchnorm_cnn, (12, 12, 1), augment="light")
    CountCalls.calls = 0  # its build called it
    assert training.recalibrate_batchnorm(model, images) == 2 and CountCalls.calls == 1  # nested: still found
    for layer in arch.layers[-1].layers:
        layer.trainable = not isinstance(layer, layers.BatchNormalization)
    CountCalls.calls = 0
    assert training.recalibrate_batchnorm(model, images) == 0 and CountCalls.calls == 0


def test_batchnorm_statistics_are_re_estimated_on_plain_images_layer_after_layer():
    keras.utils.set_random_seed(0)
    model, arch = assemble(two_batchnorm_cnn, (12, 12, 1), augment="light")
    pixels = bright_or_dark(size=12).pixels
    assert training.recalibrate_batchnorm(model, pixels) == 2
    x = pixels.astype("float32") / 255  # what the architecture receives, un-augmented
    for name in ("bn1", "bn2"):
        norm = arch.get_layer(name)
        # the layer's inputs, with the layers before it (bn1 for bn2) already re-estimated
        a = keras.ops.convert_to_numpy(keras.Model(arch.input, norm.input)(x, training=False)).astype(np.float64)
        a = a.reshape(-1, a.shape[-1])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(norm.moving_mean), a.mean(axis=0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(norm.moving_variance), a.var(axis=0), rtol=1e-3, atol=1e-6
        )


@pytest.mark.slow
def test_the_validation_loss_is_that_of_the_re_estimated_model(tmp_path):
    """The saved (best-epoch) model carries batch-norm statistics re-estimated on the plain fit images,
    and its loss on the inner split is the ``val_loss`` early stopping saw for that epoch."""
    images = bright_or_dark()
    fold = NestedStratifiedKFold(3, 0.2, 0).split(images.labels)[0]
    settings = TrainSettings(epochs=3, batch_size=16, lr=1e-2, lr_decay_epochs=10, patience=5, augment="light")
    result = train_fold(two_batchnorm_cnn, images, fold, settings, seed=0, model_path=tmp_path / "model.keras")
    assert set(result.history) >= {"loss", "val_loss", "val_accuracy"} and len(result.history["val_loss"]) == 3
    model = training.load_fold_model(tmp_path / "model.keras")
    arch = next(m for m in model.layers if isinstance(m, keras.Model) and "bn1" in [x.name for x in m.layers])
    norm = arch.get_layer("bn1")  # fewer fit images than RECALIBRATION_IMAGES: all of them, un-augmented
    x = images.pixels[fold.train].astype("float32") / 255
    a = keras.ops.convert_to_numpy(keras.Model(arch.input, norm.input)(x, training=False)).astype(np.float64)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(norm.moving_mean), a.reshape(-1, 4).mean(axis=0), rtol=1e-4)
    p = np.clip(model.predict(images.pixels[fold.val], verbose=0).reshape(-1), 1e-7, 1 - 1e-7)
    y = images.labels[fold.val]
    loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert loss == pytest.approx(result.history["val_loss"][int(np.argmin(result.history["val_loss"]))], rel=1e-4)


def test_a_fold_without_an_inner_split_trains_every_epoch_and_ends_with_re_estimated_batchnorm(tmp_path):
    """A refit's fold (``benchmark refit``): no early stopping, however the loss goes; the saved model's
    batch-norm statistics are those of the plain fit images after the last epoch; nothing is predicted."""
    images, none = bright_or_dark(), np.array([], dtype=np.int64)
    fold = Fold(np.arange(len(images.labels)), none, none)
    settings = TrainSettings(epochs=4, batch_size=16, lr=1e-2, lr_decay_epochs=10, patience=1, augment="light")
    result = train_fold(two_batchnorm_cnn, images, fold, settings, seed=0, model_path=tmp_path / "model.keras")
    assert len(result.history["loss"]) == 4 and "val_loss" not in result.history
    assert result.probabilities.shape == (0,)
    model = training.load_fold_model(tmp_path / "model.keras")
    arch = next(m for m in model.layers if isinstance(m, keras.Model) and "bn1" in [x.name for x in m.layers])
    norm, x = arch.get_layer("bn1"), images.pixels.astype("float32") / 255  # all 90: fewer than RECALIBRATION_IMAGES
    a = keras.ops.convert_to_numpy(keras.Model(arch.input, norm.input)(x, training=False)).astype(np.float64)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(norm.moving_mean), a.reshape(-1, 4).mean(axis=0), rtol=1e-4)


def test_a_two_class_builder_serves_three_classes_with_a_softmax_on_its_features():
    model, arch = assemble(small_cnn, (8, 8, 1), augment="none", n_classes=3)
    assert arch.output_shape == (None, 3) and arch.layers[-1].activation.__name__ == "softmax"
    assert arch.layers[-1].input is arch.layers[-2].output  # the builder's features, its Dense(1) replaced
    out = keras.ops.convert_to_numpy(model(np.zeros((2, 8, 8, 1), "uint8")))
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-6)


def test_a_builder_that_takes_num_classes_builds_its_own_head_and_one_that_cannot_be_adapted_is_named():
    def own_head(input_shape, num_classes=2):
        inputs = keras.Input(shape=input_shape)
        x = layers.GlobalAveragePooling2D()(inputs)
        return keras.Model(inputs, layers.Dense(num_classes, activation="softmax", name="mine")(x))

    def no_dense_end(input_shape):
        inputs = keras.Input(shape=input_shape)
        x = layers.Dense(1)(layers.GlobalAveragePooling2D()(inputs))
        return keras.Model(inputs, layers.Activation("sigmoid")(x))

    _, arch = assemble(own_head, (8, 8, 1), augment="none", n_classes=4)
    assert arch.output_shape == (None, 4) and arch.layers[-1].name == "mine"
    with pytest.raises(ArchitectureError, match="cannot serve 3 classes: it ends in Activation.*num_classes"):
        assemble(no_dense_end, (8, 8, 1), augment="none", n_classes=3)
    _, binary = assemble(small_cnn, (8, 8, 1), augment="none")  # two classes: the builder's model as it is
    assert binary.output_shape == (None, 1)


def test_k_class_weights_biases_and_targets():
    labels = np.array([0, 1, 1, 2, 2, 2])
    assert class_weights(labels, 3) == {0: 2.0, 1: 1.0, 2: pytest.approx(2 / 3)}
    assert initial_bias(labels, 3) == pytest.approx(np.log([1 / 6, 2 / 6, 3 / 6]).tolist())
    assert class_weights(np.array([0, 1, 1, 1])) == {0: 2.0, 1: pytest.approx(2 / 3)}  # two classes unchanged
    np.testing.assert_array_equal(training.targets(labels[:2], 2), [0.0, 1.0])
    np.testing.assert_array_equal(training.targets(labels[:2], 3), [[1, 0, 0], [0, 1, 0]])
    model, arch = assemble(small_cnn, (8, 8, 1), augment="none", n_classes=3)
    assert set_output_bias(arch, initial_bias(labels, 3))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(arch.layers[-1].bias), np.log([1 / 6, 2 / 6, 3 / 6]))


def conv_bn_relu(shape, filters, name):
    """A 3-layer sub-model, as residual blocks are often written."""
    inputs = keras.Input(shape=shape)
    x = layers.BatchNormalization(name=f"{name}_bn")(layers.Conv2D(filters, 3, padding="same")(inputs))
    return keras.Model(inputs, layers.ReLU()(x), name=name)


def nested_cnn(input_shape):
    """Batch normalisation in the architecture, in a nested model, in a model nested in a nested Sequential,
    and in a block called on two branches."""
    inputs = keras.Input(shape=input_shape)
    x = layers.BatchNormalization(name="flat_bn")(inputs)
    x = conv_bn_relu(input_shape, 4, "block")(x)
    shape = (*input_shape[:2], 4)
    stage = keras.Sequential(
        [keras.Input(shape), conv_bn_relu(shape, 4, "inner"), layers.BatchNormalization(name="stage_bn")], name="stage"
    )
    x = stage(x)
    shared = conv_bn_relu(shape, 4, "shared")
    x = layers.Add()([shared(x), shared(layers.Conv2D(4, 1)(x))])
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(layers.GlobalAveragePooling2D()(x)))


def backbone_cnn(input_shape):
    """A keras.applications backbone called on an Input, the usual way to use one."""
    inputs = keras.Input(shape=input_shape)
    backbone = keras.applications.MobileNetV3Small(
        input_shape=input_shape, include_top=False, weights=None, pooling="avg"
    )
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(backbone(inputs)))


def inputs_seen(arch: keras.Model, x: np.ndarray) -> dict:
    """Every batch-norm layer's inputs over ``x`` (rows of channels) in one inference pass of ``arch``,
    recorded by the layers themselves as they run, nested or not. Once each layer's statistics have been
    re-estimated after those before it, they are the statistics of these inputs."""
    seen = {}
    with pytest.MonkeyPatch.context() as patch:
        for norm in (layer for layer in arch._flatten_layers() if isinstance(layer, layers.BatchNormalization)):

            def record(inputs, *args, _norm=norm, _call=norm.call, **kwargs):
                a = keras.ops.convert_to_numpy(inputs).astype(np.float64)
                seen.setdefault(_norm, []).append(a.reshape(-1, a.shape[-1]))
                return _call(inputs, *args, **kwargs)

            patch.setattr(norm, "call", record)
        arch(x, training=False)
    return {norm: np.concatenate(rows) for norm, rows in seen.items()}


def assert_statistics_are_those_seen(arch: keras.Model, pixels: np.ndarray) -> int:
    """Each batch-norm layer's moving mean and variance are those of its inputs over ``pixels``; returns how
    many layers were checked."""
    seen = inputs_seen(arch, pixels.astype("float32") / 255)  # what the architecture receives, un-augmented
    for norm, a in seen.items():
        mean, variance = (keras.ops.convert_to_numpy(v) for v in (norm.moving_mean, norm.moving_variance))
        spread = np.sqrt(a.var(axis=0)) + 1e-6  # float32 round-off is relative to a channel's spread
        np.testing.assert_allclose(mean / spread, a.mean(axis=0) / spread, atol=1e-3, err_msg=norm.name)
        np.testing.assert_allclose(variance, a.var(axis=0), rtol=1e-3, atol=1e-9, err_msg=norm.name)
    return len(seen)


def check_nested_batchnorm_is_re_estimated(build, layer_count: int) -> None:
    keras.utils.set_random_seed(0)
    images = real_images()
    model, arch = assemble(build, images.pixels.shape[1:], augment="light")
    assert training.recalibrate_batchnorm(model, images.pixels) == layer_count
    assert assert_statistics_are_those_seen(arch, images.pixels) == layer_count


@pytest.mark.realdata
@pytest.mark.filterwarnings("error:The structure of `inputs`:UserWarning")  # a probe called as it was built
@pytest.mark.parametrize("build, layer_count", [(nested_cnn, 5), (backbone_cnn, 34)])
def test_batchnorm_statistics_are_re_estimated_through_nested_models(build, layer_count):
    check_nested_batchnorm_is_re_estimated(build, layer_count)


def check_nested_models_train_with_batchnorm_re_estimated(folder: Path | None = None) -> None:
    """A nested model and a keras.applications backbone train through train_fold; the saved model's
    batch-norm statistics are those of the plain fit images. Models are saved in ``folder`` ($CACHE)."""
    folder = Path(folder or os.environ["CACHE"])
    images = real_images()
    fold = NestedStratifiedKFold(3, 0.2, 0).split(images.labels)[0]
    settings = TrainSettings(epochs=2, batch_size=16, lr=1e-3, lr_decay_epochs=10, patience=5, augment="light")
    for build, layer_count in ((nested_cnn, 5), (backbone_cnn, 34)):
        path = folder / f"{build.__name__}.keras"
        result = train_fold(build, images, fold, settings, seed=0, model_path=path)
        assert len(result.history["val_loss"]) == 2 and np.all(np.isfinite(result.probabilities))
        _, arch = training.split_input(training.load_fold_model(path))
        # fewer fit images than RECALIBRATION_IMAGES: all of them, un-augmented
        assert assert_statistics_are_those_seen(arch, images.pixels[fold.train]) == layer_count


@pytest.mark.slow
@pytest.mark.realdata
def test_nested_models_train_with_batchnorm_re_estimated(tmp_path):
    check_nested_models_train_with_batchnorm_re_estimated(tmp_path)


def test_early_stopping_spans_the_phases_and_restores_the_best_weights_of_either():
    """One EarlyStoppingAcrossPhases for the warm-up's fit and the fine-tuning's: the best epoch and the
    patience carry over (Keras's own would start afresh and restore the fine-tuning's best)."""
    model = keras.Sequential([keras.Input((1,)), layers.Dense(1)])
    stopping = training.EarlyStoppingAcrossPhases(patience=2)
    stopping.set_model(model)
    kernel = model.layers[0].kernel
    for phase_losses in ([1.0, 0.5], [0.7, 0.6]):  # the best epoch is the warm-up's second
        stopping.on_train_begin()
        for epoch, loss in enumerate(phase_losses):
            kernel.assign([[loss]])  # weights that name their epoch
            stopping.on_epoch_end(epoch, {"val_loss": loss})
        stopping.on_train_end()
    assert model.stop_training and stopping.best == 0.5
    assert float(keras.ops.convert_to_numpy(kernel)[0, 0]) == 0.5
