"""hullhunter: GNoME-style materials-discovery campaigns on HPC clusters."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hullhunter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
