"""The router service: scores a prompt's difficulty with the ONNX classifier and picks a tier."""
