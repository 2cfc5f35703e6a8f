"""Entry points on top of the layers: the console command, the demo (and next the HTTP service)."""
