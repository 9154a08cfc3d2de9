"""posecal's version, in a module of its own so that low layers (the export cache's keys) can read it."""

__version__ = "0.2.0"
