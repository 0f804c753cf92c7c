"""`python -m modelslab_fetch` runs the `modelslab-fetch` command."""

from .cli import console_main

console_main()
