"""The light inference path a release trades on: the ONNX model in onnxruntime and a release's signals.

Nothing here imports keras, torch, optuna, gymnasium or stable-baselines3 (AWS Lambda size and cold start).
"""
