"""Text detection with an exported DB model: the same pre/post-processing as evaluation."""
import json
import os
import time

import cv2
import numpy as np

from ppdistill.engine.host_memory import keep_freed_host_memory
from ppdistill.engine.launch import cli_main
from ppdistill.infer.args import common_parser, get_image_file_list, str2bool
from ppdistill.infer.predictor import InferenceModel

NORMALIZE = {"scale": "1./255.", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
             "order": "hwc"}


class TextDetector:
    """``detector(bgr_image) -> (boxes [K, 4, 2] float32, seconds)`` with an exported DB model.

    Pre-processing is the Eval pipeline (DetResizeForTest, NormalizeImage, ToCHWImage),
    post-processing DBPostProcess; boxes are ordered clockwise from the top-left corner,
    clipped to the image, and boxes thinner than 4 pixels are dropped.
    """

    def __init__(self, det_model_dir, use_gpu=False, cpu_threads=2, limit_side_len=960,
                 limit_type="max", db_thresh=0.3, box_thresh=0.6, unclip_ratio=1.5,
                 use_dilation=False, score_mode="fast", box_type="quad", enable_mkldnn=None):
        from ppdistill.data.imaug import create_operators
        from ppdistill.postprocess import build_post_process
        self.ops = create_operators([
            {"DetResizeForTest": {"limit_side_len": limit_side_len, "limit_type": limit_type}},
            {"NormalizeImage": dict(NORMALIZE)},
            {"ToCHWImage": None},
            {"KeepKeys": {"keep_keys": ["image", "shape"]}},
        ], path="predict_det")
        self.post_process = build_post_process({
            "name": "DBPostProcess", "thresh": db_thresh, "box_thresh": box_thresh,
            "max_candidates": 1000, "unclip_ratio": unclip_ratio, "use_dilation": use_dilation,
            "score_mode": score_mode, "box_type": box_type}, path="predict_det")
        self.box_type = box_type
        self.model = InferenceModel(det_model_dir, use_gpu=use_gpu, cpu_threads=cpu_threads,
                                    enable_mkldnn=enable_mkldnn)

    def __call__(self, image):
        from ppdistill.data.imaug import transform
        start = time.time()
        result = transform({"image": image}, self.ops)
        if result is None:
            raise ValueError("pre-processing rejected the image")
        tensor, shape = result
        outputs = self.model(np.expand_dims(tensor, 0).astype("float32"))
        boxes = self.post_process({"maps": outputs[0]}, np.expand_dims(shape, 0))[0]["points"]
        boxes = self.filter_boxes(boxes, image.shape[:2])
        return boxes, time.time() - start

    def filter_boxes(self, boxes, image_hw):
        height, width = image_hw
        kept = []
        for box in boxes:
            box = np.array(box, dtype="float32")
            if self.box_type == "quad":
                box = order_points_clockwise(box)
            box[:, 0] = np.clip(box[:, 0], 0, width - 1)
            box[:, 1] = np.clip(box[:, 1], 0, height - 1)
            if self.box_type == "quad":
                if (np.linalg.norm(box[0] - box[1]) <= 3
                        or np.linalg.norm(box[0] - box[3]) <= 3):
                    continue
            kept.append(box)
        if self.box_type == "quad":
            return np.array(kept, dtype="float32").reshape([-1, 4, 2])
        return kept


def order_points_clockwise(points):
    """Top-left, top-right, bottom-right, bottom-left (by coordinate sums and differences)."""
    points = np.asarray(points, dtype="float32")
    ordered = np.zeros((4, 2), dtype="float32")
    sums = points.sum(axis=1)
    ordered[0], ordered[2] = points[np.argmin(sums)], points[np.argmax(sums)]
    rest = np.delete(points, (np.argmin(sums), np.argmax(sums)), axis=0)
    diffs = np.diff(rest, axis=1).ravel()
    ordered[1], ordered[3] = rest[np.argmin(diffs)], rest[np.argmax(diffs)]
    return ordered


def draw_boxes(image, boxes):
    canvas = image.copy()
    for box in boxes:
        pts = np.round(np.asarray(box)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], True, color=(0, 255, 0), thickness=2)
    return canvas


def build_parser():
    parser = common_parser("Detect text with an exported DB model (paddle.inference)")
    parser.add_argument("--det_model_dir", required=True)
    parser.add_argument("--det_algorithm", default="DB", choices=["DB"])
    parser.add_argument("--det_limit_side_len", type=float, default=960)
    parser.add_argument("--det_limit_type", default="max", choices=["max", "min"])
    parser.add_argument("--det_db_thresh", type=float, default=0.3)
    parser.add_argument("--det_db_box_thresh", type=float, default=0.6)
    parser.add_argument("--det_db_unclip_ratio", type=float, default=1.5)
    parser.add_argument("--use_dilation", type=str2bool, default=False)
    parser.add_argument("--det_db_score_mode", default="fast", choices=["fast", "slow"])
    parser.add_argument("--det_box_type", default="quad", choices=["quad", "poly"])
    parser.add_argument("--draw_img_save_dir", default="./inference_results")
    return parser


@cli_main
def main(argv=None):
    """Detect text in every image; write det_results.txt and det_res_<image> drawings."""
    args = build_parser().parse_args(argv)
    keep_freed_host_memory()  # a predictor's runs reuse the same blocks
    detector = TextDetector(
        args.det_model_dir, use_gpu=args.use_gpu, cpu_threads=args.cpu_threads,
        limit_side_len=args.det_limit_side_len, limit_type=args.det_limit_type,
        db_thresh=args.det_db_thresh, box_thresh=args.det_db_box_thresh,
        unclip_ratio=args.det_db_unclip_ratio, use_dilation=args.use_dilation,
        score_mode=args.det_db_score_mode, box_type=args.det_box_type,
        enable_mkldnn=args.enable_mkldnn)
    os.makedirs(args.draw_img_save_dir, exist_ok=True)
    files = get_image_file_list(args.image_dir)
    if args.warmup:
        detector(np.random.randint(0, 255, (640, 640, 3), dtype=np.uint8))
    lines, latencies = [], []
    for path in files:
        image = cv2.imread(path)
        if image is None:
            print(f"warning: {path}: cannot read the image, skipped")
            continue
        boxes, seconds = detector(image)
        latencies.append(seconds)
        name = os.path.basename(path)
        points = [np.asarray(b).astype(int).tolist() for b in boxes]
        lines.append(f"{name}\t{json.dumps([{'points': p} for p in points])}")
        cv2.imwrite(os.path.join(args.draw_img_save_dir, f"det_res_{name}"),
                    draw_boxes(image, boxes))
        print(f"{name}: {len(points)} boxes, {seconds * 1000:.1f} ms")
    if not latencies:  # as predict_rec: nothing readable is a user error (exit 2)
        raise FileNotFoundError(f"--image_dir {args.image_dir}: no readable image")
    with open(os.path.join(args.draw_img_save_dir, "det_results.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + ("\n" if lines else ""))
    if latencies:
        print(f"{len(latencies)} images on {detector.model.device}, average latency "
              f"{1000 * float(np.mean(latencies)):.1f} ms/image; results in {args.draw_img_save_dir}")
    return lines
