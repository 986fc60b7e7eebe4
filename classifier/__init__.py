"""prompt-tagger serving core. Imports onnxruntime, tokenizers, numpy and the language-ID library only."""

from .labels import LABELS
from .model import Classifier, ModelError, Tag
from .text import InputError

__all__ = ["Classifier", "Tag", "ModelError", "InputError", "LABELS"]
__version__ = "0.1.0"
