"""Deployable forms of a posecal model: ONNX export (all heads, dynamic batch), its onnxruntime runner, int8 quantisation."""
