"""fragfix: learn what healthy data looks like, and repair damaged binary files.

The package root stays light (no torch import) so `fragfix --help` is fast; import the
submodules (`fragfix.model.autoencoder`, `fragfix.recovery.repair` …) for the library.
"""
__version__ = "0.1.0"
