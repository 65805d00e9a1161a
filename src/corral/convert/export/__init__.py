"""The built-in exporters, one module (or package) per format."""
