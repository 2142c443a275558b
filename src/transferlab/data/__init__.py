"""Datamodules: built-in offline sets, image folders and torchvision datasets."""

from transferlab.data.base import ImageDataModule, Splits, stratified_indices
from transferlab.data.builtin import Digits, MNIST5k, MnistSplit, Synthetic
from transferlab.data.files import ImageFolderData, TorchvisionData

__all__ = [
    "Digits",
    "ImageDataModule",
    "ImageFolderData",
    "MNIST5k",
    "MnistSplit",
    "Splits",
    "Synthetic",
    "TorchvisionData",
    "stratified_indices",
]
