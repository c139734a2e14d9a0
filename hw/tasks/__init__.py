"""One module per homework, each exposing `run(cfg, run_dir) -> dict[str, float]`."""
