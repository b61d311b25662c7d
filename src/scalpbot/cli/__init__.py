"""The ``scalpbot`` command line (typer + rich); thin: parse options, call one job, render."""
