"""Version of the istn-sk distribution."""

__version__ = "0.1.0"
