"""Command-line front door: argparse, argv[0] dispatch and exit codes, nothing else."""
