"""``python -m scalpbot`` runs the command line."""

from scalpbot.cli.app import main

main()
