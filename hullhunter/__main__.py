"""``python -m hullhunter`` runs the command line."""

from hullhunter.cli import main

main()
