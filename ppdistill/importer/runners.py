"""Run an export on one input: onnxruntime for ``.onnx``, ``paddle.inference`` for Paddle models."""
import functools
import os

import numpy as np

from ppdistill.importer.onnx_reader import MISSING


@functools.lru_cache(maxsize=4)
def _onnx_session(path, _mtime):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=4)
def _paddle_predictor(model_file, params_file, _mtime):
    from paddle import inference
    config = inference.Config(model_file, params_file)
    config.disable_gpu()
    if hasattr(config, "disable_mkldnn"):
        config.disable_mkldnn()
    config.set_cpu_math_library_num_threads(1)
    config.disable_glog_info()
    return inference.create_predictor(config)


def run_onnx(path, image):
    """First output of the ONNX model at ``path`` for the NCHW float32 ``image``."""
    try:
        import onnxruntime  # noqa: F401  (a clear message when it is missing)
    except ImportError:
        raise ImportError(MISSING) from None
    session = _onnx_session(path, os.path.getmtime(path))
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: image})[0])


def run_paddle_inference(model_file, params_file, image):
    """First output of a Paddle inference model (``.pdmodel`` or ``.json``) for ``image``."""
    predictor = _paddle_predictor(model_file, params_file,
                                  os.path.getmtime(model_file) + os.path.getmtime(params_file))
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(image.shape))
    handle.copy_from_cpu(np.ascontiguousarray(image))
    predictor.run()
    output = predictor.get_output_handle(predictor.get_output_names()[0])
    return np.asarray(output.copy_to_cpu())
