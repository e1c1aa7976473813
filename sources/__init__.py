"""One adapter per store; loaders live beside the source they batch."""
