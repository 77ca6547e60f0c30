"""The backends that run a bundle (numpy, onnx, torch); :mod:`rlport.backends.registry` lists them."""
