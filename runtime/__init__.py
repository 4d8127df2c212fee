"""Running trained models outside PyTorch eager: export to ONNX (`onnx_export`), the manifest beside each file
(`manifest`), ONNX Runtime sessions as the stages' EmbedFn (`onnx_session`), and the exported file each front-end
section makes on first use and caches (`onnx_cache`). onnx, onnxruntime and onnxscript are imported only here, by
the functions that need them (`packages.require`): the toolkit runs without them while `runtime: torch`."""
