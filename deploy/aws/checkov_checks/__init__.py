"""checkov checks of this project's own rules (loaded through ``external-checks-dir`` in ``.checkov.yaml``)."""
