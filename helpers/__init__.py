"""Reusable code of the Mars terrain segmentation study (see README.md).

Its subpackages are its layers, each importing only those before it: `configs` (plain data), `runtime`, `data`,
`model`, `predict`, `run`, `study`, and `kaggle` (README, "Code").

Importing the package does not import TensorFlow: the plain-data modules (`configs`, `run.records`, `study.table`...)
load without it. The first import of TensorFlow, from whichever module, runs with its C++ start-up lines held back
(`held_stderr`). The custom Keras layers and losses register when `helpers.model.layers` and `helpers.model.losses`
are imported (any module that builds a model does); `helpers.model.models.load_model(path)` reloads a saved `.keras`
model with them.
"""
import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
import warnings

__version__ = "0.1.0"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "tensorflow" not in sys.modules:  # TensorFlow reads its oneDNN switch once, at start: only before it counts
    from helpers.runtime.cpu import ONEDNN_SWITCH, onednn_switch_default

    if ONEDNN_SWITCH not in os.environ and onednn_switch_default():
        os.environ[ONEDNN_SWITCH] = onednn_switch_default()  # oneDNN on AVX2-only CPUs too (helpers.runtime.cpu)


@contextlib.contextmanager
def held_stderr():
    """Hold back what C++ code writes straight to file descriptor 2 in the block (TensorFlow's start-up and CUDA
    probing lines, written before its log level applies); replay it if the block raises."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some embedded consoles): run the block as it is
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Import finder that runs TensorFlow's own module code inside `held_stderr`, once, then steps aside: its C++
    start-up lines would otherwise put noise above the one-line errors of the command-line tools. Set
    MARS_TF_STARTUP_LOG=1 to see them."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _HeldLoader(spec.loader)
        return spec


class _HeldLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with held_stderr():
            self.loader.exec_module(module)


if "tensorflow" not in sys.modules and not os.environ.get("MARS_TF_STARTUP_LOG"):
    if not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())

# Keras's MeanIoU asks JAX for int64 confusion-matrix indices; without jax_enable_x64 JAX gives int32 and warns at
# every metric update. int32 holds every index of a 5-class matrix, so the numbers are the same: the warning is noise.
warnings.filterwarnings("ignore", message="Explicitly requested dtype int64 requested in asarray", category=UserWarning)
