"""DFMS: distributed file storage with content-defined chunking and dedup."""

__version__ = "0.1.0"
