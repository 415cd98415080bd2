"""Load exported models with ``paddle.inference`` (both file-format generations)."""
import os
import warnings

import paddle

from ppdistill.infer.onednn import ONEDNN_CACHE_CAPACITY, onednn_default


def find_model_files(model_dir):
    """``(model_file, params_file)`` in ``model_dir``: ``inference.json`` (paddle 3 / PIR) or
    ``inference.pdmodel`` (paddle 2.x), with ``inference.pdiparams``.

    Paddle 2.x cannot read ``.json`` programs, so it only takes ``.pdmodel``. If both files are
    there (a directory exported by both generations), paddle 3 takes the newer one.
    """
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"{model_dir}: model directory not found (export one with "
                                f"tools/export_model.py)")
    params = os.path.join(model_dir, "inference.pdiparams")
    names = ["inference.json", "inference.pdmodel"]
    if int(paddle.__version__.split(".")[0]) == 2:
        names = ["inference.pdmodel"]
    candidates = [os.path.join(model_dir, name) for name in names]
    candidates = [path for path in candidates if os.path.isfile(path)]
    if candidates and os.path.isfile(params):
        return max(candidates, key=os.path.getmtime), params
    raise FileNotFoundError(f"{model_dir}: no inference.json/inference.pdmodel with "
                            f"inference.pdiparams (found: {', '.join(sorted(os.listdir(model_dir)))})")


def _json_input_shape(model_file):
    """Shape of the first ``data`` (feed) op of a paddle 3 (PIR) ``.json`` program, or None."""
    import json
    with open(model_file) as handle:
        program = json.load(handle)["program"]
    for op in program["regions"][0]["blocks"][0]["ops"]:
        if str(op.get("#", "")).endswith(".data"):
            for attr in op.get("A", []):
                if isinstance(attr, dict) and attr.get("N") == "shape":
                    return [int(v) for v in attr["AT"]["D"]]
    return None


def _pdmodel_input_shape(model_file):
    """Shape of the first ``feed`` target of a paddle 2.x ``.pdmodel`` program, or None."""
    from paddle.base.proto import framework_pb2
    with open(model_file, "rb") as handle:
        program = framework_pb2.ProgramDesc.FromString(handle.read())
    block = program.blocks[0]
    for op in block.ops:
        if op.type == "feed":
            name = [arg for out in op.outputs if out.parameter == "Out" for arg in out.arguments][0]
            for var in block.vars:
                if var.name == name:
                    return [int(v) for v in var.type.lod_tensor.tensor.dims]
    return None


def program_input_shape(model_file):
    """The declared shape of an exported program's input, e.g. ``[-1, 3, 48, 320]`` (``-1``: any
    size), read from the ``.json`` / ``.pdmodel`` file; None if it cannot be read."""
    try:
        if model_file.endswith(".json"):
            return _json_input_shape(model_file)
        return _pdmodel_input_shape(model_file)
    except Exception:  # an unreadable program only loses the shape hint
        return None


class InferenceModel:
    """A ``paddle.inference`` predictor: ``model(images) -> list of output arrays``.

    GPU when asked for and available, otherwise CPU with ``cpu_threads`` threads and, unless
    ``enable_mkldnn`` is False, oneDNN (MKLDNN; ``enable_mkldnn=None`` follows
    :func:`ppdistill.infer.onednn.onednn_default`: on where paddle has it, off with
    ``PPDISTILL_ONEDNN=0``). If oneDNN cannot run the program (paddle 3.3 on a ``.json`` program
    with a scale-factor ``interpolate``, e.g. a det model exported by PaddleOCR; ppdistill's own
    exports avoid it), the first call says so in one warning and the model runs on paddle's plain
    CPU kernels from then on (``self.onednn`` tells which).
    """

    def __init__(self, model_dir, use_gpu=False, cpu_threads=2, enable_mkldnn=None, gpu_mem=500):
        model_file, params_file = find_model_files(model_dir)
        self.model_file, self.params_file = model_file, params_file
        self.cpu_threads = int(cpu_threads)
        self.gpu_mem = gpu_mem
        self.device = "cpu"
        if use_gpu and paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
            self.device = "gpu"
        self.onednn = self.device == "cpu" and (
            onednn_default() if enable_mkldnn is None else bool(enable_mkldnn))
        #: a oneDNN program is verified by its first run (paddle fails there, not when loading)
        self._verified = not self.onednn
        #: declared input shape (``-1``: any size), e.g. SVTRNet's fixed ``[-1, 3, 48, 320]``
        self.input_shape = program_input_shape(model_file)
        self._open(self.onednn)

    def _config(self, onednn):
        from paddle import inference
        config = inference.Config(self.model_file, self.params_file)
        if self.device == "gpu":
            config.enable_use_gpu(self.gpu_mem, 0)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(self.cpu_threads)
            if onednn:
                config.enable_mkldnn()
                config.set_mkldnn_cache_capacity(ONEDNN_CACHE_CAPACITY)
            elif hasattr(config, "disable_mkldnn"):  # paddle 3 enables it by default
                config.disable_mkldnn()
        config.switch_use_feed_fetch_ops(False)
        config.switch_ir_optim(True)
        if hasattr(config, "disable_glog_info"):
            config.disable_glog_info()
        return config

    def _open(self, onednn):
        from paddle import inference
        self.predictor = inference.create_predictor(self._config(onednn))
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.outputs = [self.predictor.get_output_handle(n)
                        for n in self.predictor.get_output_names()]

    def _run(self, images):
        self.input.reshape(list(images.shape))
        self.input.copy_from_cpu(images)
        self.predictor.run()
        return [out.copy_to_cpu() for out in self.outputs]

    def __call__(self, images):
        if self._verified:
            return self._run(images)
        try:
            outputs = self._run(images)
        except Exception as exc:  # noqa: BLE001 - paddle raises many types; retried without oneDNN
            onednn_error = exc
        else:
            self._verified = True
            return outputs
        self._open(onednn=False)
        try:
            outputs = self._run(images)
        except Exception:  # the program's or the input's fault, not oneDNN's: keep it, raise
            self._open(onednn=True)
            raise
        self.onednn, self._verified = False, True
        lines = [line.strip() for line in str(onednn_error).splitlines() if line.strip()]
        warnings.warn(f"{self.model_file}: paddle {paddle.__version__}'s oneDNN cannot run this "
                      f"program ({type(onednn_error).__name__}: {lines[0][:200] if lines else ''}); "
                      f"running on paddle's plain CPU kernels (slower). A det model exported by "
                      f"ppdistill's tools/export_model.py runs with oneDNN.")
        return outputs
