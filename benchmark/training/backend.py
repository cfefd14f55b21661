"""Training: devices, numerics and compilation of the active Keras backend (tensorflow, jax or torch).

The only module that may import a backend library directly, and only the one
that Keras is running on, so the tool works where TensorFlow is not installed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import keras

from benchmark import UsageError
from benchmark.training import STRATEGIES


@dataclass(frozen=True)
class DeviceInfo:
    backend: str
    devices: tuple[str, ...]
    gpus: int
    mixed_precision: bool
    deterministic: bool
    strategy: str  # what is actually used: "none" or "mirrored"


def _devices(backend: str) -> tuple[str, ...]:
    if backend == "torch":  # keras.distribution has no torch implementation
        import torch

        return ("cpu:0", *(f"cuda:{i}" for i in range(torch.cuda.device_count())))
    return tuple(keras.distribution.list_devices())


def setup(
    mixed_precision: bool = False, deterministic: bool = False, strategy: str = "auto", compile_cache: str | None = None
) -> DeviceInfo:
    """Prepare the backend once per run: GPU memory growth, precision policy, determinism and,
    under JAX, the compilation cache in the folder ``compile_cache``."""
    if strategy not in STRATEGIES:
        raise UsageError(f"--strategy {strategy}: choose one of {', '.join(STRATEGIES)}.")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # new models per fold retrace by design; the warning is noise
        for gpu in tf.config.list_physical_devices("GPU"):
            # Grow GPU memory on demand instead of grabbing it all at start.
            with contextlib.suppress(RuntimeError):
                tf.config.experimental.set_memory_growth(gpu, True)
        if deterministic:
            tf.config.experimental.enable_op_determinism()
    elif backend == "torch" and deterministic:
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
    elif backend == "jax" and compile_cache:
        use_compile_cache(compile_cache)
    # jax is deterministic on CPU; on GPU XLA_FLAGS=--xla_gpu_deterministic_ops=true must be set before start.

    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    devices = _devices(backend)
    gpus = sum(1 for d in devices if d.lower().startswith(("gpu", "cuda")))
    # auto: data parallelism when there are several GPUs and the backend supports it here
    used = "mirrored" if strategy == "mirrored" or (strategy == "auto" and gpus > 1 and backend != "torch") else "none"
    if used == "mirrored" and backend == "torch":
        raise UsageError("--strategy mirrored: data parallelism is supported on the tensorflow and jax backends only.")
    if used == "mirrored" and backend == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    return DeviceInfo(
        backend=backend,
        devices=devices,
        gpus=gpus,
        mixed_precision=mixed_precision,
        deterministic=deterministic,
        strategy=used,
    )


def use_compile_cache(folder: str) -> None:
    """Keep JAX's compiled programs in ``folder``, unless the user chose a folder already.

    Every fold of an architecture compiles the same program (new weights are inputs, not
    constants), so after the first fold, and in later runs, compilation is a read from
    disk: 8 s → 0.7 s per fold for ``baseline`` at 56 px on a 2-core CPU.
    """
    import jax

    if jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", folder)
        # Keep every program that took a moment to compile (the default keeps those over 1 s only).
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def feeds_from_device() -> bool:
    """Whether training batches are gathered on the device (:class:`benchmark.training.fit.DeviceBatches`).

    Under JAX on a GPU or TPU: there the pixels' per-step trip from the host is what
    keeps a small CNN waiting. On the CPU the device is the host and there is nothing
    to save; TensorFlow and PyTorch keep Keras's own input pipelines.
    """
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() != "cpu"


def model_scope(device: DeviceInfo):
    """The context in which models are built and compiled (MirroredStrategy on tensorflow)."""
    if device.strategy == "mirrored" and device.backend == "tensorflow":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    return contextlib.nullcontext()


def gpu_scope(gpu: int | None):
    """Run what is inside on GPU ``gpu`` (a worker's share of a several-GPU machine); None: as usual."""
    if gpu is None:
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.device(f"/GPU:{gpu}")
    if backend == "jax":
        import jax

        return jax.default_device(jax.devices("gpu")[gpu])
    import torch

    return torch.cuda.device(gpu)


def limit_threads(threads: int | None) -> None:
    """Use at most ``threads`` CPU threads for one training (a worker's share of the cores).

    TensorFlow takes it until its runtime starts; joblib also caps the BLAS/OpenMP
    pools of its workers, and XLA's CPU pool follows the cores it is given.
    """
    backend = keras.backend.backend()
    if threads is None:
        return
    if backend == "tensorflow":
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # already set in this worker process
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)


# How TensorFlow (ResourceExhaustedError, "OOM when allocating"), JAX/XLA ("RESOURCE_EXHAUSTED: Out of
# memory") and PyTorch (torch.cuda.OutOfMemoryError, "CUDA out of memory") report an exhausted device.
OUT_OF_MEMORY_SIGNS = ("ResourceExhausted", "RESOURCE_EXHAUSTED", "OutOfMemory", "out of memory", "OOM when allocating")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is a device out-of-memory error of any backend.

    >>> is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    True
    >>> is_out_of_memory(ValueError("shapes (3,) and (4,) not aligned"))
    False
    """
    text = f"{type(err).__name__}: {err}"
    return any(sign in text for sign in OUT_OF_MEMORY_SIGNS)
