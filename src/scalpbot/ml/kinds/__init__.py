"""The model kinds, one module each, registered by name in :data:`scalpbot.ml.registry.MODEL_KINDS`."""
