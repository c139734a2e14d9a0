"""hw: one command per homework of the fine-tuning course, with reproducible runs and hand-in reports."""

__version__ = "0.1.0"
