"""Entry point for `python -m hw` (also what `torchrun -m hw` and `accelerate launch -m hw` run)."""

from hw.cli import main

main()
