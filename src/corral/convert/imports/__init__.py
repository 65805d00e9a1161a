"""The importers: ``convert(path, args) -> (manifest text, Report)`` and ``find(path)``."""
