"""Run an ONNX classifier with onnxruntime: the route for PyTorch and TensorFlow models.

onnxruntime is an optional dependency (``pip install -r requirements-onnx.txt``):
it is imported only when a ``.onnx`` MODEL_URI is loaded. The model must have one
float input and give one row of class probabilities (or logits, which are
softmaxed) per input; its labels come from the ONNX metadata property ``labels``
(a JSON list, in output order), else from the labeling config.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image  # this module ships with the image variant, which has Pillow

#: The side images are resized to for a network whose input size is not fixed.
DEFAULT_IMAGE_SIDE = 224


class OnnxClassifier:
    """An ONNX classifier's session, its input's shape and its labels."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise RuntimeError("MODEL_URI is an ONNX model but onnxruntime is not installed: "
                               "pip install -r requirements-onnx.txt (images: --build-arg EXTRAS=onnx)") from None
        self.session = onnxruntime.InferenceSession(str(path), providers=onnxruntime.get_available_providers())
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or "float" not in inputs[0].type:
            raise ValueError(f"the ONNX model needs one float input, has {[(i.name, i.type) for i in inputs]}")
        self.input_name = inputs[0].name
        self.input_shape = list(inputs[0].shape)  # symbolic dimensions are strings or None
        self.output_name = self._probability_output()
        meta = self.session.get_modelmeta().custom_metadata_map
        self.labels: list[str] | None = [str(x) for x in json.loads(meta["labels"])] if "labels" in meta else None
        self.mean = np.array(json.loads(meta["mean"]), dtype=np.float32) if "mean" in meta else None
        self.std = np.array(json.loads(meta["std"]), dtype=np.float32) if "std" in meta else None

    def _probability_output(self) -> str:
        """The 2-D float output: ``probabilities`` when present (skl2onnx's name), else the first."""
        outputs = [o for o in self.session.get_outputs() if "float" in o.type and len(o.shape or []) == 2]
        if not outputs:
            raise ValueError("the ONNX model has no 2-D float output (one row of class scores per input)")
        return next((o.name for o in outputs if o.name == "probabilities"), outputs[0].name)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities, one row per input row; logits are softmaxed."""
        scores = self.session.run([self.output_name], {self.input_name: batch.astype(np.float32)})[0]
        scores = np.asarray(scores, dtype=np.float64)
        in_range = (scores >= 0).all() and (scores <= 1).all()
        if in_range and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
            return scores
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


class OnnxImageClassifier(OnnxClassifier):
    """A vision network exported to ONNX (e.g. from PyTorch): images in, class probabilities out.

    Its input is ``[batch, 3, height, width]``, RGB scaled to 0..1, then normalised with the model's
    ``mean``/``std`` metadata when it has them (e.g. ImageNet's).
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        if len(self.input_shape) != 4:
            raise ValueError("the ONNX model needs an image input [batch, 3, height, width], "
                             f"found shape {self.input_shape}")
        self.height, self.width = (d if isinstance(d, int) else DEFAULT_IMAGE_SIDE for d in self.input_shape[2:4])

    @property
    def side(self) -> int:
        """The longer side of the network's input: images need not be decoded any larger."""
        return max(self.height, self.width)

    def predict_images(self, images: list[Image.Image]) -> np.ndarray:
        """Class probabilities of RGB images, one row each."""
        batch = np.stack([np.asarray(image.resize((self.width, self.height), Image.Resampling.BILINEAR),
                                     dtype=np.float32) for image in images]) / 255.0
        if self.mean is not None and self.std is not None:
            batch = (batch - self.mean) / self.std
        return self.predict_proba(batch.transpose(0, 3, 1, 2))
