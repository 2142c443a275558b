"""Datamodules: built-in offline sets, image folders, torchvision datasets and domain pairs."""

from transferlab.data.base import ImageDataModule, Splits, stratified_indices
from transferlab.data.builtin import Digits, MNIST5k, MnistSplit, Synthetic
from transferlab.data.domains import MNISTM, DomainPair
from transferlab.data.files import ImageFolderData, TorchvisionData

__all__ = [
    "Digits",
    "DomainPair",
    "ImageDataModule",
    "ImageFolderData",
    "MNIST5k",
    "MNISTM",
    "MnistSplit",
    "Splits",
    "Synthetic",
    "TorchvisionData",
    "stratified_indices",
]
