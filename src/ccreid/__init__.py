"""ccreid: a reproducible, cached experiment pipeline for cloth-changing person re-identification."""

__version__ = "0.1.0"
