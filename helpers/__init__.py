"""Reusable code of the Mars terrain segmentation study (see README.md).

Importing the package registers every custom Keras layer and loss, so a saved `.keras` model
reloads with `import helpers` alone, no `custom_objects` needed.
"""
import contextlib
import os
import sys
import tempfile

__version__ = "0.1.0"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up lines held back (`held_stderr`), which would put noise above the
    one-line errors of the command-line tools. Set MARS_TF_STARTUP_LOG=1 to see them."""
    if "tensorflow" in sys.modules or os.environ.get("MARS_TF_STARTUP_LOG"):
        return
    with held_stderr():
        import tensorflow  # noqa: F401


_import_tensorflow_quietly()

from helpers import layers, losses  # noqa: E402,F401  (registers the custom Keras objects)
