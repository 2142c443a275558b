"""Datamodules: built-in offline sets, image folders, torchvision datasets, domain pairs and text."""

from transferlab.data.base import ImageDataModule, Splits, stratified_indices
from transferlab.data.builtin import Digits, MNIST5k, MnistSplit, Synthetic
from transferlab.data.domains import MNISTM, DomainPair
from transferlab.data.files import ImageFolderData, TorchvisionData
from transferlab.data.text import TextDataModule
from transferlab.data.text_sources import TextFileData, VaderLexicon

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
    "TextDataModule",
    "TextFileData",
    "TorchvisionData",
    "VaderLexicon",
    "stratified_indices",
]
