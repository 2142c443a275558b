"""The deployable model: the whole classifier as ONNX, its input spec, the parity check against
PyTorch, the model card, and inference over image files (``transferlab-predict``).

- :mod:`~transferlab.export.onnx`: the exported graph (uint8 images in, logits out) and
  onnxruntime sessions.
- :mod:`~transferlab.export.parity`: ONNX against PyTorch on held-out images.
- :mod:`~transferlab.export.preprocess`: ``preprocess.json``, the evaluation transform as data.
- :mod:`~transferlab.export.card`: ``model_card.md``.
- :mod:`~transferlab.export.inference`: files in, logits and ``predictions.csv`` rows out.

The entry point is :mod:`transferlab.export.cli` (``transferlab-export``).
"""
