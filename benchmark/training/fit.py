"""Training: fit one architecture on one fold and predict its score fold.

What the model is fitted on decides everything fitted from data: class weights
and the output bias come from the fold's fit part only; early stopping watches
the inner validation split; the score fold is only predicted, once, at the end.
A fold with no validation part and no score part is a refit (``benchmark refit``):
every image fitted for exactly ``--epochs``, nothing watched, nothing predicted.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from benchmark.data.images import Images
from benchmark.data.splits import Fold
from benchmark.store.files import atomic_path
from benchmark.training import AUGMENTATIONS, TrainSettings, backend


class ArchitectureError(Exception):
    """An architecture that cannot be trained (bad builder, bad output, NaN loss)."""


class ClassCountError(ArchitectureError):
    """An architecture that cannot serve the task's number of classes: a fix of the command, not a failure."""


# Whether Keras compiles the train and predict steps with XLA, per backend. Under JAX an
# uncompiled step dispatches every op eagerly (12× slower on a GPU, see docs/performance.md).
# TensorFlow keeps its tf.function graph without XLA: its image-transform op, used by the
# augmentation, has no XLA kernel. PyTorch runs eagerly (torch.compile is opt-in in Keras).
JIT_COMPILE = {"jax": True, "tensorflow": False, "torch": False}


# Fine-tuning a pretrained backbone runs at this share of --lr: steps sized for a random model
# would undo the features it was pretrained for (Keras's transfer-learning guide: 1e-5 after 1e-3).
FINETUNE_LR_FACTOR = 0.1


@dataclass
class FoldResult:
    history: dict[str, list[float]]  # per epoch: loss, val_loss, ...
    probabilities: np.ndarray  # of the score fold, in fold.score order: (n,) of the positive class, or (n, K)
    class_weight: dict[int, float]
    initial_bias: float | list[float] | None  # None when the architecture's output layer has no bias
    fit_seconds: float
    predict_seconds: float
    params: int
    jit_compile: bool  # whether the train step was XLA-compiled
    epoch_seconds: list[float]  # wall time of each epoch (the first includes compilation)
    input_seconds: float | None  # host time spent preparing training batches (device-fed backends)
    phases: dict[str, int]  # epochs run per phase: {"train": n}, or {"warmup": n, "finetune": m} when pretrained


def class_weights(labels: np.ndarray, n_classes: int = 2) -> dict[int, float]:
    """``w_c = n / (K · n_c)``: every class weighs the same in the loss.

    >>> class_weights(np.array([0, 1, 1, 1]))
    {0: 2.0, 1: 0.6666666666666666}
    >>> class_weights(np.array([0, 1, 1, 2, 2, 2]), n_classes=3)
    {0: 2.0, 1: 1.0, 2: 0.6666666666666666}
    """
    labels = np.asarray(labels)
    n, counts = len(labels), np.bincount(labels, minlength=n_classes)
    return {c: float(n / (n_classes * counts[c])) for c in range(n_classes)}


def initial_bias(labels: np.ndarray, n_classes: int = 2) -> float | list[float]:
    """The output bias at which the model starts out predicting the class shares of ``labels``:
    ``log(n_pos / n_neg)`` for one sigmoid unit, ``log(n_c / n)`` for each unit of a softmax.

    >>> round(initial_bias(np.array([0, 1, 1, 1])), 4)
    1.0986
    >>> [round(b, 4) for b in initial_bias(np.array([0, 1, 1, 2]), n_classes=3)]
    [-1.3863, -0.6931, -1.3863]
    """
    counts = np.bincount(np.asarray(labels), minlength=n_classes)
    if n_classes == 2:
        return float(math.log(counts[1] / counts[0]))
    return [float(math.log(c / counts.sum())) for c in counts]


def augmentation(level: str = "light") -> keras.Sequential:
    """The random layers of one :data:`AUGMENTATIONS` level, for pixels in [0, 1].

    >>> [layer.__class__.__name__ for layer in augmentation("light").layers]
    ['RandomRotation', 'RandomZoom', 'RandomTranslation', 'RandomContrast']
    """
    r = AUGMENTATIONS[level]
    steps = [
        layers.RandomRotation(r["rotation"]),  # a fraction of a full turn: 0.03 is ±11°
        layers.RandomZoom(r["zoom"]),
        layers.RandomTranslation(r["translation"], r["translation"]),
        layers.RandomContrast(r["contrast"]),  # its clip to [0, 255] never bites on [0, 1]
    ]
    if "brightness" in r:
        steps.append(layers.RandomBrightness(r["brightness"], value_range=(0, 1)))  # ± that share of the range
    return keras.Sequential(steps, name="augmentation")


def compilable(model: keras.Model) -> keras.Model:
    """Let Keras compile ``model`` as :data:`JIT_COMPILE` says for the running backend.

    Keras 3.15 marks RandomRotation, RandomZoom and RandomTranslation ``supports_jit =
    False`` because TensorFlow's image-transform op has no XLA kernel, and one such layer
    turns compilation off for the whole model. Under JAX they are jax.numpy code that
    compiles; on TensorFlow the tool never asks for XLA, so nothing changes there.
    Works on saved fold models too (load them with ``compile=False``).
    """
    for layer in _all_layers(model):
        if isinstance(layer, (layers.RandomRotation, layers.RandomZoom, layers.RandomTranslation)):
            layer.supports_jit = True
    model.jit_compile = JIT_COMPILE.get(keras.backend.backend(), False)
    return model


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def save_fold_model(model: keras.Model, path: Path) -> None:
    """Save ``model`` atomically, without its optimizer: Adam's two moments per weight would triple
    the file, and a fold model is only ever loaded to predict. The same graph as an uncompiled model
    carries no optimizer."""
    with atomic_path(path) as tmp:
        keras.Model(model.inputs, model.outputs, name=model.name).save(tmp)


def load_fold_model(path: Path) -> keras.Model:
    """A saved fold model, ready to predict (compiled as :data:`JIT_COMPILE` says)."""
    return compilable(keras.models.load_model(path, compile=False))


def assemble(
    build: Callable,
    input_shape: tuple[int, int, int],
    augment: str,
    name: str | None = None,
    n_classes: int = 2,
    weights: str = "none",
) -> tuple[keras.Model, keras.Model]:
    """Wrap an architecture: uint8 pixels → [0, 1] → augmentation (training only) → architecture.

    Returns (wrapped model, architecture model); the wrapped model is called ``name``
    (the registry's name; by default the architecture model's). For more than two classes
    see :func:`build_for`. Raises ArchitectureError when the builder fails or its output
    does not fit.
    """
    arch = build_for(build, input_shape, n_classes, weights)
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1 / 255)(inputs)
    if augment != "none":
        x = augmentation(augment)(x)
    x = arch(x)
    # Under mixed precision, keep the probabilities (and so the loss) in float32.
    outputs = layers.Activation("linear", dtype="float32", name="probability")(x)
    # A model's name must be a valid scope name: keras:DenseNet121 is named keras_DenseNet121.
    return keras.Model(inputs, outputs, name=re.sub(r"[^A-Za-z0-9_.-]", "_", name or arch.name)), arch


def build_for(
    build: Callable, input_shape: tuple[int, int, int], n_classes: int = 2, weights: str = "none"
) -> keras.Model:
    """The architecture for ``n_classes``: two classes need one sigmoid unit. For more, a builder that
    takes ``num_classes`` builds its own K-unit softmax output; any other builder's final one-unit
    Dense layer is replaced by a K-unit softmax Dense on the same features, so an architecture
    written for two classes serves K without edits.
    """
    takes = inspect.signature(build).parameters
    takes_k = n_classes > 2 and "num_classes" in takes
    kwargs = {"num_classes": n_classes} if takes_k else {}
    if pretrained(build, weights):
        kwargs["weights"] = weights
    try:
        arch = build(input_shape, **kwargs)
    except Exception as err:  # any bug in a user's builder is that architecture's failure
        raise ArchitectureError(f"build failed: {type(err).__name__}: {err}") from err
    if not isinstance(arch, keras.Model):
        raise ArchitectureError(f"build returned {type(arch).__name__}, expected a keras.Model")
    wanted = n_classes if takes_k else 1
    if tuple(arch.output_shape) != (None, wanted):
        end = f"Dense({wanted}, activation='{'softmax' if takes_k else 'sigmoid'}')"
        raise ArchitectureError(f"output shape {tuple(arch.output_shape)}, expected (None, {wanted}): end with {end}")
    if n_classes == 2 or takes_k:
        return arch
    last = arch.layers[-1]
    if not isinstance(last, layers.Dense):
        raise ClassCountError(
            f"cannot serve {n_classes} classes: it ends in {type(last).__name__}, not in a Dense(1) layer the tool "
            "can replace by a softmax over the classes. End the builder with Dense(1, activation='sigmoid'), or "
            "give it a num_classes argument and end with Dense(num_classes, activation='softmax')."
        )
    head = layers.Dense(n_classes, activation="softmax", name="classes")(last.input)
    return keras.Model(arch.input, head, name=arch.name)


def pretrained(build: Callable, weights: str) -> bool:
    """Whether ``build`` starts from pretrained ``weights`` (it takes a ``weights`` argument)."""
    return weights != "none" and "weights" in inspect.signature(build).parameters


def phases(settings: TrainSettings, from_pretrained: bool) -> list[tuple[str, int]]:
    """(phase, last epoch) in order: one ``train`` phase from scratch; from pretrained weights, a
    ``warmup`` of the output layer alone, then ``finetune`` of the whole network, within --epochs.

    >>> s = TrainSettings(10, 32, 1e-3, 10, 5, "none", warmup_epochs=2)
    >>> phases(s, False), phases(s, True)
    ([('train', 10)], [('warmup', 2), ('finetune', 10)])
    """
    warmup = min(settings.warmup_epochs, settings.epochs) if from_pretrained else 0
    if not warmup:
        return [("train", settings.epochs)]
    return [("warmup", warmup)] + ([("finetune", settings.epochs)] if warmup < settings.epochs else [])


def set_phase(arch: keras.Model, phase: str) -> None:
    """Which layers train in ``phase``: all in ``train``; the output layer alone in ``warmup`` (the
    backbone frozen, its batch-norm layers in inference mode); in ``finetune`` all but the batch-norm
    layers, which stay frozen in inference mode, as Keras's transfer-learning guide advises: their
    pretrained statistics would be replaced by those of small batches of another kind of image."""
    for layer in arch.layers:
        layer.trainable = phase != "warmup" or layer is arch.layers[-1]
    if phase == "finetune":
        for layer in _all_layers(arch):
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False


def split_input(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(preprocessing, architecture) of a model made by :func:`assemble` (e.g. a saved fold model).

    The preprocessing model maps uint8 pixels to what the architecture receives
    (augmentation is inactive outside training).
    """
    arch = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name != "augmentation"][-1]
    before = [
        layer for layer in model.layers[: model.layers.index(arch)] if not isinstance(layer, keras.layers.InputLayer)
    ]
    return keras.Sequential(before, name="preprocessing"), arch


def set_output_bias(arch: keras.Model, bias: float | list[float]) -> bool:
    """Set the bias of the last layer whose bias has one value per output unit (one, or one per
    class); False when there is none."""
    values = np.atleast_1d(np.asarray(bias, dtype=float))
    for layer in reversed(arch.layers):
        b = getattr(layer, "bias", None)
        if b is not None and tuple(b.shape) == values.shape:
            b.assign(values.astype(b.dtype))
            return True
    return False


def targets(labels: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """What the model is fitted to: the label (0/1) for two classes, a one-hot row for more.

    >>> targets(np.array([0, 2]), 3).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    if n_classes == 2:
        return np.asarray(labels).astype("float32")
    return np.eye(n_classes, dtype="float32")[np.asarray(labels)]


def _compile(model: keras.Model, settings: TrainSettings, steps_per_epoch: int, lr: float | None = None) -> None:
    """Adam from ``lr`` (``settings.lr``) falling 10× every ``lr_decay_epochs``; (binary) cross-entropy."""
    schedule = keras.optimizers.schedules.ExponentialDecay(
        lr or settings.lr, decay_steps=settings.lr_decay_epochs * steps_per_epoch, decay_rate=0.1
    )
    # Label smoothing pulls the targets to ε/K and 1 − ε + ε/K, so overconfident fits cost more.
    if settings.n_classes == 2:
        loss = keras.losses.BinaryCrossentropy(label_smoothing=settings.label_smoothing)
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=["accuracy"])
    compilable(model)


class EarlyStoppingAcrossPhases(keras.callbacks.EarlyStopping):
    """Early stopping on ``val_loss`` with the best weights restored, one instance for every phase's
    ``fit``: the best epoch and the patience carry over from one phase to the next (Keras's own
    starts afresh at each ``fit``), and each phase starts from the best weights so far."""

    def __init__(self, patience: int):
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=True)
        self.begun = False

    def on_train_begin(self, logs=None):
        if not self.begun:
            super().on_train_begin(logs)
            self.begun = True


def _callbacks(watch: EpochWatch, stopping: EarlyStoppingAcrossPhases | None) -> list:
    """After :class:`Validate` has scored the epoch: early stopping (when validating), the epoch watch, NaN."""
    callbacks = [stopping, watch] if stopping else [watch]
    if keras.backend.backend() == "tensorflow":
        # TensorFlow keeps its behaviour: Keras's per-step NaN check, which also keeps its callbacks
        # synchronous; without it Keras hands them to a thread, 6 % slower on 2 vCPUs (docs/performance.md).
        callbacks.append(keras.callbacks.TerminateOnNaN())
    return callbacks


def _fit_data(x_fit, y_fit, weights: dict, settings: TrainSettings) -> tuple[dict, DeviceBatches | None]:
    """``model.fit``'s training-data arguments: batches gathered on the device, or Keras's own pipeline."""
    if backend.feeds_from_device():
        batches = DeviceBatches(x_fit, y_fit, weights, settings.batch_size)
        return {"x": iter(batches), "steps_per_epoch": batches.steps, "shuffle": False}, batches  # shuffled there
    return {"x": x_fit, "y": y_fit, "class_weight": weights, "batch_size": settings.batch_size, "shuffle": True}, None


RECALIBRATION_IMAGES = 512  # fit images that re-estimate the batch-norm statistics each epoch


def recalibrate_batchnorm(model: keras.Model, pixels: np.ndarray) -> int:
    """Set each trainable BatchNormalization layer's moving mean and variance to those of its inputs
    over ``pixels`` (uint8, un-augmented), layer after layer, the network in inference mode; return how
    many layers were set.

    Training normalises with the statistics of augmented batches; the moving averages that
    inference uses then describe augmented images, not the plain ones the model is scored on
    (the batch-norm architectures' epoch-1 optimum, docs/results.md). Re-estimated this way, the
    statistics are exactly those of plain images, as "precise BN" (Wu & Johnson 2021) does.
    One pass over the images, each layer's statistics set just before it runs, so a layer's inputs
    come from layers already re-estimated; a layer the network calls more than once gets the pooled
    statistics of its calls. A frozen layer (``trainable=False``: a pretrained backbone while it is
    fine-tuned) runs in inference mode in training too, and keeps its statistics.
    """
    preprocess, arch = split_input(model)
    graph = _graph(arch)
    if graph is None:  # a subclassed architecture: no graph to run layer by layer
        return 0
    if not any(isinstance(layer, layers.BatchNormalization) and layer.trainable for layer in _all_layers(graph)):
        # Nothing to set, so no pass: its 512 images at once held pyramid_down's widest activations,
        # 1.7 GiB at 56 px, in every epoch of an architecture without batch norm.
        return 0
    pooled: dict[layers.BatchNormalization, list] = {}
    _run_estimating(graph, [preprocess(pixels, training=False)], pooled)
    return len(pooled)


def _run_estimating(graph: keras.Model, inputs: list, pooled: dict) -> list:
    """Run ``graph`` eagerly on ``inputs``, node after node in inference mode (nested models' graphs
    too), re-estimating each trainable batch-norm layer from its input just before it runs. A value
    is dropped once its last user has run, so memory holds the live tensors only."""
    nodes = [node for depth in sorted(graph._nodes_by_depth, reverse=True) for node in graph._nodes_by_depth[depth]]
    nodes = [node for node in nodes if node.operation and not node.is_input]  # deepest first: inputs before users
    users = {}
    for node in nodes:
        for t in node.input_tensors:
            users[id(t)] = users.get(id(t), 0) + 1
    kept = {id(t) for t in graph.outputs}
    values = {id(t): v for t, v in zip(graph.inputs, inputs, strict=True)}
    for node in nodes:
        op = node.operation
        args, kwargs = node.arguments.fill_in(values)
        if isinstance(op, layers.BatchNormalization) and op.trainable:
            _estimate(op, args[0], pooled)
        if (inner := _graph(op)) is not None:
            outputs = _run_estimating(inner, [values[id(t)] for t in node.input_tensors], pooled)
        else:
            outputs = op(*args, **kwargs)
        for t in node.input_tensors:
            users[id(t)] -= 1
            if not users[id(t)] and id(t) not in kept:
                del values[id(t)]
        values.update({id(t): v for t, v in zip(node.outputs, keras.tree.flatten(outputs), strict=True)})
    return [values[id(t)] for t in graph.outputs]


def _estimate(norm: layers.BatchNormalization, x, pooled: dict) -> None:
    """Set ``norm``'s moving statistics to those of ``x`` pooled with its earlier calls' in this pass."""
    ops, channel = keras.ops, norm.axis % len(x.shape)
    axes = [a for a in range(len(x.shape)) if a != channel]
    x = ops.cast(x, "float32")  # a float16 input under mixed precision
    mean = ops.mean(x, axis=axes, keepdims=True)
    variance = ops.mean(ops.square(x - mean), axis=axes)  # centred first: no cancellation in float32
    calls = pooled.setdefault(norm, [])
    calls.append(tuple(ops.convert_to_numpy(ops.reshape(v, (-1,))).astype(np.float64) for v in (mean, variance)))
    means = np.mean([m for m, _ in calls], axis=0)
    variances = np.mean([v + m**2 for m, v in calls], axis=0) - means**2  # the calls' images pooled
    norm.moving_mean.assign(means.astype(norm.moving_mean.dtype))
    norm.moving_variance.assign(np.maximum(variances, 0).astype(norm.moving_variance.dtype))


def _graph(layer) -> keras.Model | None:
    """The functional graph that ``layer`` runs (a Sequential holds one once built), or None."""
    graph = getattr(layer, "_functional", None) or layer
    return graph if isinstance(graph, keras.Model) and hasattr(graph, "_nodes_by_depth") else None


class Validate(keras.callbacks.Callback):
    """At each epoch's end: re-estimate the batch-norm statistics on un-augmented fit images, then
    score the inner validation split (``val_loss``, ``val_accuracy``) for early stopping."""

    def __init__(self, recalibration: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, batch_size: int):
        super().__init__()
        self.recalibration, self.x_val, self.y_val, self.batch_size = recalibration, x_val, y_val, batch_size

    def on_epoch_end(self, epoch, logs=None):
        recalibrate_batchnorm(self.model, self.recalibration)
        scores = self.model.evaluate(self.x_val, self.y_val, batch_size=self.batch_size, verbose=0, return_dict=True)
        logs.update({f"val_{name}": float(value) for name, value in scores.items()})


class EpochWatch(keras.callbacks.Callback):
    """After each epoch: record its wall time, stop when the loss is NaN, call ``report(epoch, logs)``.

    Epoch hooks only, never batch hooks: a callback with a batch hook (Keras's own
    TerminateOnNaN is one) makes Keras read the loss back from the device after every
    step, which stalls a GPU.
    """

    def __init__(self, report: Callable[[int, dict], None] | None = None):
        super().__init__()
        self.report = report
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)
        logs = dict(logs or {})
        if not np.isfinite(logs.get("loss", 0.0)):
            self.model.stop_training = True  # train_fold reports the epoch
        if self.report:
            self.report(epoch + 1, logs)


@dataclass
class DeviceBatches:
    """Training batches gathered on the device from a fold's images copied there once.

    Shuffled and class-weighted exactly as Keras's own pipeline for numpy arrays does
    (a fresh ``np.random.permutation`` per epoch; ``class_weight`` as per-image weights),
    so the numbers equal those of ``model.fit(x, y, class_weight=...)``; only the pixels
    no longer cross from the host at every step. ``seconds`` counts the host time spent.
    """

    x: np.ndarray
    y: np.ndarray
    class_weight: dict[int, float]
    batch_size: int
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        ops = keras.ops
        start = time.perf_counter()
        classes = self.y if self.y.ndim == 1 else self.y.argmax(axis=1)  # the label, or its one-hot row
        weights = np.array([self.class_weight[int(c)] for c in classes], dtype="float32")
        x, y, w = (ops.convert_to_tensor(a) for a in (self.x, self.y, weights))
        self.seconds += time.perf_counter() - start
        while True:  # Keras takes `steps` batches per epoch
            order = np.random.permutation(len(self.y)).astype("int32")
            for i in range(self.steps):
                start = time.perf_counter()
                index = ops.convert_to_tensor(order[i * self.batch_size : (i + 1) * self.batch_size])
                batch = tuple(ops.take(a, index, axis=0) for a in (x, y, w))
                self.seconds += time.perf_counter() - start
                yield batch


def check_untrained_output(model: keras.Model, pixels: np.ndarray, batch_size: int) -> None:
    """Raise ArchitectureError when the untrained model's output on ``pixels`` is not finite.

    A loss that turns NaN has two causes with different fixes: an architecture whose output is
    not finite before any update (the pixels are uint8, always finite, so the learning rate
    cannot be the cause), or updates that diverge (a lower learning rate helps). Predicting the
    fit images of the batch-norm re-estimation before training tells the two apart, and spares
    the epochs of a model that cannot train. Inference mode draws no random numbers: the
    training that follows is the same as without the check.
    """
    out = np.asarray(model.predict(pixels, batch_size=batch_size, verbose=0), np.float64)
    bad = int((~np.isfinite(out.reshape(len(out), -1)).all(axis=1)).sum())
    if not bad:
        return
    half = keras.mixed_precision.global_policy().compute_dtype == "float16"
    raise ArchitectureError(
        f"the untrained model's output is not finite (NaN or infinity for {bad} of {len(out)} fit images, before "
        "any training step): the architecture itself computes it, so the learning rate is not the cause; look "
        "for a division by zero, a logarithm or square root of a negative number, or an overflow in its layers"
        + (" (float16 overflows above 65504: try without --mixed-precision)" if half else "")
    )


def train_fold(
    build: Callable,
    images: Images,
    fold: Fold,
    settings: TrainSettings,
    seed: int,
    model_path: Path | None = None,
    report: Callable[[int, dict], None] | None = None,
    scope=None,
    name: str | None = None,
) -> FoldResult:
    """Fit a fresh model on ``fold.train``, stop early on ``fold.val``, predict ``fold.score``.

    Without a ``fold.val`` the model trains for ``settings.epochs`` with no early stopping, its batch-norm
    statistics re-estimated once at the end (as each epoch's validation would have); an empty ``fold.score``
    is not predicted.
    """
    with own_python_random(seed):
        return _train_fold(build, images, fold, settings, seed, model_path, report, scope, name)


@contextlib.contextmanager
def own_python_random(seed: int):
    """Give Keras a Python random generator of this training's own while it runs.

    Keras draws its default seeds (weight initializers, dropout, augmentation) from
    Python's global generator, which other threads of the process may draw from too
    — a Dask worker's event loop does, for heartbeat jitter — so the same fold
    trained twice there would differ. Seeded as ``keras.utils.set_random_seed(seed)``
    seeds the global one, the private generator gives the same seeds, undisturbed.
    """
    from keras.src.random import seed_generator  # the one module that reads Python's generator

    shared = seed_generator.python_random
    seed_generator.python_random = random.Random(seed)
    try:
        yield
    finally:
        seed_generator.python_random = shared


def _train_fold(build, images, fold, settings, seed, model_path, report, scope, name) -> FoldResult:
    keras.utils.set_random_seed(seed)  # the same seed per fold for every architecture
    k = settings.n_classes
    x_fit, y_fit = images.pixels[fold.train], targets(images.labels[fold.train], k)
    x_val, y_val = images.pixels[fold.val], targets(images.labels[fold.val], k)
    weights = class_weights(images.labels[fold.train], k)
    bias = initial_bias(images.labels[fold.train], k)
    with scope or contextlib.nullcontext():
        model, arch = assemble(build, x_fit.shape[1:], settings.augment, name, k, settings.weights)
        bias_set = set_output_bias(arch, bias)
        _compile(model, settings, steps_per_epoch=math.ceil(len(x_fit) / settings.batch_size))
    watch = EpochWatch(report)
    sample = np.random.default_rng(seed).permutation(len(x_fit))[:RECALIBRATION_IMAGES]  # leaves numpy's global RNG
    recalibration = x_fit[np.sort(sample)]
    check_untrained_output(model, recalibration, max(settings.batch_size, 128))
    validating = len(fold.val) > 0
    # Without an inner split (a refit) nothing is watched: the epochs are fixed, the statistics set at the end.
    validate = [Validate(recalibration, x_val, y_val, settings.batch_size)] if validating else []
    stopping = EarlyStoppingAcrossPhases(settings.patience) if validating else None
    history, epochs, input_seconds = {}, {}, None
    start = time.perf_counter()
    for phase, last in phases(settings, pretrained(build, settings.weights)):
        if phase != "train":
            set_phase(arch, phase)
            lr = settings.lr * (FINETUNE_LR_FACTOR if phase == "finetune" else 1)
            with scope or contextlib.nullcontext():  # recompiled: which weights train has changed
                _compile(model, settings, math.ceil(len(x_fit) / settings.batch_size), lr)
        data, batches = _fit_data(x_fit, y_fit, weights, settings)
        first = sum(epochs.values())
        fit = model.fit(
            **data, initial_epoch=first, epochs=last, callbacks=[*validate, *_callbacks(watch, stopping)], verbose=0
        )
        for key, values in fit.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        epochs[phase] = len(fit.history.get("loss", []))
        if batches:
            input_seconds = (input_seconds or 0.0) + batches.seconds
        if model.stop_training:  # stopped early (or NaN): the later phases are not run
            break
    if not validating:
        recalibrate_batchnorm(model, recalibration)
    fit_seconds = time.perf_counter() - start
    if not all(np.isfinite(history.get("loss", [np.nan]))):
        bad = next(i for i, v in enumerate(history["loss"]) if not np.isfinite(v))
        # check_untrained_output passed: the model started finite, so its updates made it diverge
        raise ArchitectureError(
            f"training loss became NaN at epoch {bad + 1}, though the untrained model's output was finite: "
            "the updates diverged; lower --lr"
        )

    start = time.perf_counter()
    probabilities = np.zeros((0,) if k == 2 else (0, k))
    if len(fold.score):
        probabilities = model.predict(images.pixels[fold.score], batch_size=max(settings.batch_size, 128), verbose=0)
    predict_seconds = time.perf_counter() - start
    probabilities = np.asarray(probabilities, dtype=np.float64)
    probabilities = probabilities.reshape(-1) if k == 2 else probabilities
    if not np.all(np.isfinite(probabilities)):
        raise ArchitectureError("predictions contain NaN or infinity")
    if model_path is not None:
        save_fold_model(model, model_path)
    return FoldResult(
        history=history,
        probabilities=probabilities,
        class_weight=weights,
        initial_bias=bias if bias_set else None,
        fit_seconds=fit_seconds,
        predict_seconds=predict_seconds,
        params=int(arch.count_params()),
        jit_compile=bool(model.jit_compile),
        epoch_seconds=watch.seconds,
        input_seconds=input_seconds,
        phases=epochs,
    )
