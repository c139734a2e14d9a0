"""Metrics computed in-package, one module per kind of task; nothing here downloads anything."""
