"""Datasets. In-memory image datasets (CIFAR-100, digits) are held as one uint8 tensor and
augmented in batches on the training device; every batch carries the samples' dataset indices."""
from .memory import ImageSet, InMemoryLoader, build_image_sets

__all__ = ["ImageSet", "InMemoryLoader", "build_image_sets"]
