"""The heavy machine-learning layer: the model kinds (the Keras MLP ...), their training, fine-tuning and artifacts.

Only the train and monitor jobs import this package, lazily: it pulls in Keras and torch (seconds of import
time, hundreds of MB). The execute path runs the exported ONNX model through the light
:mod:`scalpbot.inference.onnx` instead. :mod:`scalpbot.ml.registry` (the model seam) is light itself and
loads a kind's module only when the kind is used; the configuration reads its names.

Importing the package selects the torch backend for Keras unless ``KERAS_BACKEND`` is already set; this must
happen before anything imports ``keras``, so import ``scalpbot.ml`` (or a module inside it) first.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
