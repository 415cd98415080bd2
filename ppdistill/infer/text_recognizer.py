"""Text recognition with an exported CTC model, batched by width like PaddleOCR's predict_rec."""
import math
import os
import time

import cv2
import numpy as np

from ppdistill.engine.host_memory import keep_freed_host_memory
from ppdistill.engine.launch import cli_main
from ppdistill.infer.args import common_parser, get_image_file_list, str2bool
from ppdistill.infer.predictor import InferenceModel


def resize_norm_for_batch(image, height, width):
    """Resize to ``height`` keeping the aspect ratio (at most ``width``), scale to [-1, 1],
    pad on the right with zeros to ``width``; returns CHW float32."""
    h, w = image.shape[:2]
    resized_w = min(width, int(math.ceil(height * w / float(h))))
    resized = cv2.resize(image, (max(resized_w, 1), height)).astype("float32")
    resized = (resized.transpose((2, 0, 1)) / 255.0 - 0.5) / 0.5
    out = np.zeros((3, height, width), dtype="float32")
    out[:, :, :resized.shape[2]] = resized
    return out


class TextRecognizer:
    """``recognizer(list_of_bgr_crops) -> ([(text, score), ...], seconds)``.

    Crops are sorted by aspect ratio and batched (``rec_batch_num``); each batch is resized to
    height H and the width of its widest crop (at least the configured W), as PaddleOCR's
    predict_rec does; the CTC output is decoded with CTCLabelDecode. A model exported with a
    fixed input size (e.g. an SVTRNet teacher, ``[None, 3, 48, 320]``) gets exactly that size:
    wider crops are shrunk to fit its width, as its ``RecResizeImg`` training transform does.
    """

    def __init__(self, rec_model_dir, rec_char_dict_path, use_space_char=True,
                 rec_image_shape=(3, 48, 320), rec_batch_num=6, use_gpu=False, cpu_threads=2,
                 enable_mkldnn=None):
        from ppdistill.postprocess import build_post_process
        self.image_shape = [int(v) for v in rec_image_shape]
        self.batch_num = int(rec_batch_num)
        self.decode = build_post_process({"name": "CTCLabelDecode",
                                          "character_dict_path": rec_char_dict_path,
                                          "use_space_char": use_space_char}, path="predict_rec")
        self.model = InferenceModel(rec_model_dir, use_gpu=use_gpu, cpu_threads=cpu_threads,
                                    enable_mkldnn=enable_mkldnn)
        declared = self.model.input_shape or []
        self.fixed_hw = None
        if len(declared) == 4 and declared[2] > 0 and declared[3] > 0:
            self.fixed_hw = (int(declared[2]), int(declared[3]))
            self.image_shape = [self.image_shape[0], *self.fixed_hw]

    def __call__(self, images):
        start = time.time()
        _, height, width = self.image_shape
        ratios = [img.shape[1] / float(img.shape[0]) for img in images]
        order = np.argsort(ratios)
        results = [None] * len(images)
        for begin in range(0, len(images), self.batch_num):
            idx = order[begin:begin + self.batch_num]
            max_ratio = max([width / float(height)] + [ratios[i] for i in idx])
            batch_width = width if self.fixed_hw else int(math.ceil(height * max_ratio))
            batch = np.stack([resize_norm_for_batch(images[i], height, batch_width) for i in idx])
            probs = self.model(batch)[0]
            self._check_dictionary(probs)
            for i, item in zip(idx, self.decode(probs)):
                results[i] = item
        return results, time.time() - start

    def _check_dictionary(self, probs):
        expected = len(self.decode.character)
        if probs.shape[-1] != expected:
            raise ValueError(f"the model predicts {probs.shape[-1]} classes but the dictionary "
                             f"gives {expected} (blank + characters): check --rec_char_dict_path "
                             f"and --use_space_char")


def build_parser():
    parser = common_parser("Recognise text crops with an exported CTC model (paddle.inference)")
    parser.add_argument("--rec_model_dir", required=True)
    parser.add_argument("--rec_algorithm", default="SVTR_LCNet")
    parser.add_argument("--rec_char_dict_path", default=os.path.join(
        os.path.dirname(os.path.dirname(__file__)), "utils", "dict", "ppocr_keys_v1.txt"))
    parser.add_argument("--use_space_char", type=str2bool, default=True)
    parser.add_argument("--rec_image_shape", default="3, 48, 320")
    parser.add_argument("--rec_batch_num", type=int, default=6)
    return parser


@cli_main
def main(argv=None):
    """Recognise every image; print text, score and latency per image and on average."""
    args = build_parser().parse_args(argv)
    keep_freed_host_memory()  # a predictor's runs reuse the same blocks
    shape = [int(v) for v in args.rec_image_shape.split(",")]
    recognizer = TextRecognizer(args.rec_model_dir, args.rec_char_dict_path,
                                use_space_char=args.use_space_char, rec_image_shape=shape,
                                rec_batch_num=args.rec_batch_num, use_gpu=args.use_gpu,
                                cpu_threads=args.cpu_threads, enable_mkldnn=args.enable_mkldnn)
    files, images = [], []
    for path in get_image_file_list(args.image_dir):
        image = cv2.imread(path)
        if image is None:
            print(f"warning: {path}: cannot read the image, skipped")
            continue
        files.append(path)
        images.append(image)
    if not images:
        raise FileNotFoundError(f"--image_dir {args.image_dir}: no readable image")
    if args.warmup:
        recognizer(images[:1])
    results, seconds = recognizer(images)
    for path, (text, score) in zip(files, results):
        print(f"Predicts of {path}:({text!r}, {score:.4f})")
    print(f"{len(images)} images on {recognizer.model.device} in batches of {args.rec_batch_num}: "
          f"{1000 * seconds / len(images):.1f} ms/image")
    return list(zip(files, results))
