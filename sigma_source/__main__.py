"""`python -m sigma_source` is `sigma-load`."""

from sigma_source.cli import main

main()
