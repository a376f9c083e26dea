"""Using a trained model outside training: ONNX export (`onnx`), the Predictor both runtimes
sit behind (`predictor`), and the web demo (`app`)."""
