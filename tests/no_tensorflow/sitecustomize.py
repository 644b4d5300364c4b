"""Put this folder on PYTHONPATH and every Python process started with it (workers, notebook kernels included)
finds TensorFlow unimportable, as on a machine without it. Each attempt is also appended to the file
`MARS_TF_ATTEMPTS` names, so a test sees an import that some code caught and survived."""
import importlib.abc
import os
import sys


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            if os.environ.get("MARS_TF_ATTEMPTS"):
                with open(os.environ["MARS_TF_ATTEMPTS"], "a") as log:
                    log.write(f"{os.getpid()} {' '.join(sys.argv)[:200]}: import {name}\n")
            raise ImportError(f"{name} is made unimportable in this test process")
        return None


sys.meta_path.insert(0, _NoTensorFlow())
