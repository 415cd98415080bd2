"""Drawings that compare sub-models: one panel per sub-model, side by side on one image."""
import cv2
import numpy as np

#: BGR colours of the panels' boxes, in sub-model order
COLORS = ((0, 200, 0), (0, 0, 255), (255, 0, 0), (0, 165, 255), (255, 0, 255), (255, 255, 0))
TITLE_HEIGHT = 28  # the title bar's height for images up to 700 pixels wide (grows beyond)


def draw_polygons(image, boxes, color=(0, 255, 0), thickness=2):
    """A copy of ``image`` (BGR) with every box (``[K, N, 2]`` points) drawn as a closed line."""
    canvas = image.copy()
    for box in boxes:
        points = np.round(np.asarray(box, dtype="float64")).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [points], True, color=color, thickness=thickness)
    return canvas


def draw_side_by_side(image, boxes_per_model):
    """One panel per sub-model, left to right, each titled ``"<name>: <K> boxes"``.

    ``image``: the BGR source image ``[H, W, 3]`` (a grey ``[H, W]`` image is converted);
    ``boxes_per_model``: ``{"Teacher": boxes, "Student": boxes, ...}`` in panel order.
    Returns a BGR image of width ``len(boxes_per_model) * W`` and height
    ``H + title_height(W)``.
    """
    if not boxes_per_model:
        raise ValueError("draw_side_by_side: no sub-model to draw")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    height, width = image.shape[:2]
    bar = title_height(width)
    panels = []
    for index, (name, boxes) in enumerate(boxes_per_model.items()):
        color = COLORS[index % len(COLORS)]
        drawn = draw_polygons(image, boxes, color=color, thickness=max(2, width // 400))
        title = np.full((bar, width, 3), 255, dtype=np.uint8)
        text = f"{name}: {len(boxes)} box{'es' if len(boxes) != 1 else ''}"
        scale = _fit_text_scale(text, width - 8, bar - 8, bar / 45.0)
        cv2.putText(title, text, (4, bar - bar // 4), cv2.FONT_HERSHEY_SIMPLEX, scale, color,
                    max(1, bar // 28), cv2.LINE_AA)
        panel = np.concatenate([title, drawn], axis=0)
        if index:  # a thin separator on the panel's left edge
            panel[:, 0] = 0
        panels.append(panel)
    return np.concatenate(panels, axis=1)


def title_height(width):
    """Height of the title bar above a panel ``width`` pixels wide."""
    return max(TITLE_HEIGHT, width // 25)


def _fit_text_scale(text, max_width, max_height, largest):
    """The largest font scale (at most ``largest``) at which ``text`` fits the title bar."""
    scale = largest
    while scale > 0.2:
        (text_width, text_height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        if text_width <= max_width and text_height <= max_height:
            break
        scale -= 0.05
    return scale


def boxes_of_all_models(post_process, preds, shape_list, model_names):
    """``{name: boxes of image 0}`` for every sub-model in ``model_names``.

    ``post_process`` is a distillation post-process whose ``model_name`` attribute selects the
    sub-models; it is set to ``model_names`` for this call and restored afterwards.
    """
    configured = post_process.model_name
    post_process.model_name = list(model_names)
    try:
        result = post_process(preds, shape_list)
    finally:
        post_process.model_name = configured
    return {name: result[name][0]["points"] for name in model_names}
