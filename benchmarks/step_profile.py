"""Where a training step's time goes: one row's steady-state images/s under one dtype/XLA/batch/metrics choice.

    python -m benchmarks.step_profile "Network 9" --policy mixed_bfloat16 --xla off --batch 32 [--no-metrics]
    python -m benchmarks.step_profile Baseline --terms '{"ce": 1.0}'     # swap the loss to isolate its cost

Trains the entry's model (the default profile's width) with its loss, AdamW and (unless `--no-metrics`) the
training metrics on `--images` synthetic-default images for 4 epochs, and prints one JSON line: the first
epoch's seconds (tracing, compilation) and the median images/s of the others. One setting per process, since
the dtype policy and thread pools are fixed once TensorFlow starts; docs/performance.md holds a table of them.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.step_profile", description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--policy", default="float32", choices=("float32", "mixed_bfloat16", "mixed_float16"))
    parser.add_argument("--xla", default="on", choices=("on", "off"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=768)
    parser.add_argument("--no-metrics", action="store_true")
    parser.add_argument("--terms", help="JSON loss weights replacing the entry's")
    args = parser.parse_args(argv)

    import keras

    from helpers.configs import experiments
    from helpers.configs.profiles import get_profile
    from helpers.data.dataset import make_dataset
    from helpers.data.loading import load_mars
    from helpers.model.losses import combined_loss
    from helpers.model.metrics import training_metrics
    from helpers.model.models import build_model

    keras.mixed_precision.set_global_policy(args.policy)
    data = load_mars()
    settings = experiments.resolve(args.name)
    terms = json.loads(args.terms) if args.terms else settings["loss"]["terms"]
    images, masks = data.train_images[:args.images], data.train_masks[:args.images]
    dataset = make_dataset(images, masks, batch_size=args.batch, shuffle=True)
    model = build_model(**settings["model"], width=get_profile("default")["width"])
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, clipnorm=1.0),
                  loss=combined_loss(terms, ignore_class=settings["loss"]["ignore_class"]),
                  metrics=None if args.no_metrics else training_metrics(), jit_compile=args.xla == "on")
    seconds: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(dataset, epochs=4, verbose=0, callbacks=[Timer()])
    print(json.dumps({"name": args.name, "policy": args.policy, "xla": args.xla, "batch": args.batch,
                      "metrics": not args.no_metrics, "terms": terms, "first_epoch_s": round(seconds[0], 1),
                      "images_per_s": round(len(images) / float(np.median(seconds[1:])), 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
